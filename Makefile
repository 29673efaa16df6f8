# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test experiments shdd-showcase bench bench-shdd bench-train bench-infer lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU wheel, so that nothing pulls another build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[encoders,experiments,dev]'
	$(PY) -m pip install --quiet --no-deps geoclip
	touch $(STAMP)

# The main job: Blue Marble patches, LocDiff and the baselines (about 10 min on 2 cores).
demo: $(STAMP)
	$(PY) experiments/bluemarble.py --out experiments/results/bluemarble

# Setting B (oracle), the unseen-location study and the ablations (about 1 h on 2 cores).
experiments: $(STAMP)
	$(PY) experiments/oracle_mp16.py
	$(PY) experiments/unseen.py
	$(PY) experiments/ablations.py

shdd-showcase: $(STAMP)
	$(PY) experiments/shdd_showcase.py --out experiments/results/shdd_showcase

test: $(STAMP)
	$(PY) -m pytest

bench-shdd: $(STAMP)
	$(PY) benchmarks/bench_shdd.py --out docs/benchmarks_shdd.json

bench-train: $(STAMP)
	$(PY) benchmarks/bench_train.py

bench-infer: $(STAMP)
	$(PY) benchmarks/bench_infer.py

bench: bench-shdd bench-train bench-infer

lint: $(STAMP)
	$(VENV)/bin/ruff check shdd locdiff tests benchmarks experiments notebooks
	$(VENV)/bin/ruff format --check shdd locdiff tests benchmarks experiments

format: $(STAMP)
	$(VENV)/bin/ruff format shdd locdiff tests benchmarks experiments
	$(VENV)/bin/ruff check --fix shdd locdiff tests benchmarks experiments

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache experiments/cache
