# One-command set-up: each target builds the virtual environment it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of PyTorch this project is tested with (the package itself accepts torch>=2.6,<3).
TORCH  ?= torch==2.13.0

.PHONY: setup test demo bench bench-scale clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/avdistill demo --out demo-output

# The committed report (docs/report/): a reduced budget (40 DM/AVDD iterations, 32 real pairs per class,
# 1 set x 2 runs per cell); the cache under runs/bench-report makes a rerun continue where it stopped.
BENCH_REPORT := bench --data av-digits --methods random,herding,dm,avdd --ipc 1,10 --heads a,v,ensemble \
	--sets 1 --runs 2 --ablations avdd --retrieval --method-option dm.iterations=40 --method-option dm.real_per_class=32 \
	--method-option avdd.iterations=40 --method-option avdd.real_per_class=32 --out runs/bench-report --report docs/report

bench: setup
	$(PY) benchmarks/perf.py
	$(VENV)/bin/avdistill $(BENCH_REPORT)

# Issue 9's figures (docs/BENCHMARKS.md sections speed, flops, distributed, memory, precision); about 1.5 h on 2 cores.
bench-scale: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/speed.py all
	$(PY) benchmarks/flops.py
	$(PY) benchmarks/distributed.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/large.py measure --clips 100000
	$(PY) benchmarks/precision.py

clean:
	rm -rf $(VENV) demo-output runs .pytest_cache
