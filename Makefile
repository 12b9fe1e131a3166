# The two commands a newcomer needs: `make demo` and `make test`. Both create or refresh
# .venv themselves (re-installing only when setup.cfg changed).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench venv clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Train the built-in default (generated RP2K-format sample data, tiny WRN, CPU) on 2 devices.
demo: $(STAMP)
	$(VENV)/bin/wrn-launch --devices 2 --backend cpu

# The whole test suite (real MindSpore processes, and the wheel installed into a fresh venv in a
# temporary folder; ~21 minutes on 2 cores).
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Everything that does not start MindSpore training processes.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build dist *.egg-info
