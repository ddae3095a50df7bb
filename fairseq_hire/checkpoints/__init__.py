"""Checkpoints: what the safe loader refuses (errors), the configuration and shape checks fairseq
would otherwise trust, the one safe loader, a plugin run's atomic saving and resume hooks, the flags
that rebuild a checkpoint's encoder, and the head classes a checkpoint records."""
