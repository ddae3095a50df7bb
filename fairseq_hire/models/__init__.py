"""roberta_hire: RoBERTa with a multi-layer head (roberta_hire.py), its --encoder-layernorm-eps
(layernorm_eps.py) and the frozen encoder's cache of layer outputs (layer_cache.py). fairseq's
import_user_module imports every module here; fairseq_hire/__init__ imports roberta_hire."""
