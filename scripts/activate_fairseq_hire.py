"""pytest plugin (``-p activate_fairseq_hire``): when FAIRSEQ_HIRE_ACTIVATE names the plugin's
folder, activate it exactly as ``--user-dir`` does, before any test is collected.

In every configuration, with the plugin or without, Python's ``random`` is seeded before each test
from the test's id: fairseq's ``tests/utils.py:create_dummy_data`` draws its sentence lengths from
the unseeded ``random``, so without a seed some of fairseq's tests (test_iopath,
test_binaries::TestTranslation::test_max_positions) pass or fail from one process to the next and
would show as differences the plugin did not make."""
import argparse
import os
import random
import zlib


def pytest_configure(config):
    user_dir = os.environ.get("FAIRSEQ_HIRE_ACTIVATE")
    if user_dir:
        from fairseq.utils import import_user_module

        import_user_module(argparse.Namespace(user_dir=user_dir))


def pytest_runtest_setup(item):
    random.seed(zlib.crc32(item.nodeid.encode()))
