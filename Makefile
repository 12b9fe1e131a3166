# The two commands a newcomer needs: `make demo` and `make test`. Both create or refresh
# .venv themselves (re-installing only when setup.cfg changed).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench venv clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Train the built-in default (generated RP2K-format sample data, tiny WRN, CPU) on 2 devices.
demo: $(STAMP)
	$(VENV)/bin/wrn-launch --devices 2 --backend cpu

# The fast tests run 3 at a time (pytest-xdist): much of their time is spent waiting on the
# processes they start (on 2 idle cores: 331 s one at a time, 191 s three, 219 s four at a
# time). The Slurm tests share one worker (one test cluster at a time).
FAST := -m "not slow" -n 3 --dist loadgroup

# The whole test suite: the fast tests, then one at a time the slow ones (real MindSpore
# training processes, the wheel installed into a fresh venv in a temporary folder), whose
# training already takes both cores.
# Both parts always run; exit status 5 (PYTEST_ARGS chose no test of that part) is no failure.
test: $(STAMP)
	@$(PY) -m pytest -q $(FAST) $(PYTEST_ARGS); fast=$$?; \
	$(PY) -m pytest -q -m slow --durations=15 $(PYTEST_ARGS); slow=$$?; \
	for code in $$fast $$slow; do [ $$code = 0 ] || [ $$code = 5 ] || exit 1; done

# Everything that does not start MindSpore training processes.
test-fast: $(STAMP)
	$(PY) -m pytest -q $(FAST) $(PYTEST_ARGS)

# ruff over the whole tree (its rules, and why, are in pyproject.toml); .ci/run runs it too.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build dist *.egg-info
