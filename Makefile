# Two entry points for a newcomer: `make demo` (the main job) and `make test`.
# Each sets itself up from nothing: system headers, a virtualenv, the package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# setuptools prints a boxed "Editable installation" advisory at every `pip install -e` (folders in
# the working directory named like the package win imports; here that folder is the package).
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: demo test soak setup system-deps browser clean

system-deps:
	@# mappy (minimap2) compiles from source and needs gcc and zlib headers.
	@if ! dpkg -s zlib1g-dev >/dev/null 2>&1 || ! command -v gcc >/dev/null; then \
		echo "installing build-essential and zlib1g-dev"; \
		apt-get update -qq && apt-get install -y -qq build-essential zlib1g-dev >/dev/null; \
	fi

# The console's browser tests drive Debian's chromium through Playwright (never `playwright install`).
# Installed here where apt can; where it cannot, those tests fail and print the command.
browser:
	@if ! command -v chromium >/dev/null; then \
		echo "installing chromium (for the console's browser tests)"; \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
			echo "could not install chromium; run: apt-get update && apt-get install -y chromium"; \
	fi

$(STAMP): pyproject.toml | system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(EDITABLE) '.[test]'
	touch $(STAMP)

# The demo needs only the engine, the CLI and the example's tools (the `demo` extra).
$(DEMO_STAMP): pyproject.toml | system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(EDITABLE) '.[demo]'
	touch $(DEMO_STAMP)

setup: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m examples.genomics.demo

test: setup browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The engine under hostile input at length: 20x the fuzz examples and 100 kill -9 trials
# (`make test` runs a quick pass of both).
soak: setup
	CONVEYOR_FUZZ_EXAMPLES=400 CONVEYOR_KILL_TRIALS=100 $(BIN)/python -m pytest -q \
		tests/integration/localbatch/test_fuzz_api.py tests/integration/localbatch/test_kill_trials.py

clean:
	rm -rf $(VENV) conveyor-data examples/genomics/data examples/genomics/output
