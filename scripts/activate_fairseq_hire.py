"""pytest plugin (``-p activate_fairseq_hire``): when FAIRSEQ_HIRE_ACTIVATE names the plugin's
folder, activate it exactly as ``--user-dir`` does, before any test is collected."""
import argparse
import os


def pytest_configure(config):
    user_dir = os.environ.get("FAIRSEQ_HIRE_ACTIVATE")
    if user_dir:
        from fairseq.utils import import_user_module

        import_user_module(argparse.Namespace(user_dir=user_dir))
