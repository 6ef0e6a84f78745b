# One-command set-up: each target builds the virtual environment it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of PyTorch this project is tested with (the package itself accepts torch>=2.2,<3).
TORCH  ?= torch==2.13.0

.PHONY: setup test demo bench clean

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

bench: setup
	$(PY) benchmarks/perf.py

clean:
	rm -rf $(VENV) demo-output runs .pytest_cache
