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

# The development benchmark at each method's cpu budget (DM at AVDD's 100 iterations), IPC 1, 10 and 20,
# 3 sets x 5 runs, ensemble head (its audio and visual branches give the A and V columns), cross-modal
# retrieval, whole data 3 runs; about 4.2 h of CPU (2 h 10 min on 2 cores as two processes, each a share of
# --methods filling one cache: the accuracy cells in 1 h 25 min, the retrieval cells in 45 min more).
# The cache under runs/bench-dev makes a rerun continue where it stopped. AV-MMD's options are its defaults,
# given explicitly as the report's run gave them (it ran before they became the defaults).
BENCH_REPORT := bench --data av-digits-hard --methods random,herding,dm,avdd,davdd,mtt,avmmd --ipc 1,10,20 \
	--heads ensemble --sets 3 --runs 5 --whole-data-runs 3 --method-option dm.iterations=100 \
	--method-option avmmd.lam_mmd=1000 --method-option avmmd.pack=repeat --retrieval --no-pictures --quiet \
	--out runs/bench-dev --report docs/report-dev

bench: setup
	$(PY) benchmarks/perf.py
	$(VENV)/bin/avdistill $(BENCH_REPORT)
	$(PY) benchmarks/headline.py docs/report-dev/results.json --commit $$(git rev-parse --short HEAD)
	$(PY) benchmarks/cost.py --ipc 1,10,20 --sets 3 --out runs/cost
	$(PY) benchmarks/cost.py --report --out runs/cost --doc docs/AVMMD.md
	$(PY) benchmarks/target.py docs/report-dev/results.json --commit $$(git rev-parse --short HEAD) --cost runs/cost

# Issue 9's figures (docs/BENCHMARKS.md sections speed, flops, distributed, memory, precision); about 1.5 h on 2 cores.
bench-scale: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/speed.py all
	$(PY) benchmarks/flops.py
	$(PY) benchmarks/distributed.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/large.py measure --clips 100000
	$(PY) benchmarks/precision.py

clean:
	rm -rf $(VENV) demo-output runs .pytest_cache
