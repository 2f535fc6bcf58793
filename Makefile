# Tailor's everyday commands. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The suite's files run side by side, three at a time: much of it waits on local stacks rather than the CPU.
PYTEST := $(BIN)/pytest -n 3

.PHONY: run test test-fast bench lint lint-python browser build deploy lock clean

run: $(VENV)/.installed  ## start the local AWS, replay a simulated day of shoppers, stay up
	$(BIN)/tailor local up

# The template lints run inside the suite (tests/integration/test_template.py), so `test` runs only the Python lints
# first rather than cfn-lint and sam validate twice.
test: lint-python browser  ## the Python lints, then the whole suite: unit, integration (moto), end-to-end, template lint and build
	$(PYTEST)

# The experiments console's end-to-end test drives a real headless Chromium: Debian's chromium and chromium-driver,
# installed here when missing and apt-get can (as root); without them that one test skips, saying why.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
				>/dev/null) || echo "chromium could not be installed: the console's browser test will skip"; \
		else echo "no chromium and no apt-get as root: the console's browser test will skip"; fi; \
	fi

test-fast: $(VENV)/.installed  ## everything but the template build
	$(PYTEST) -m "not slow"

bench: $(VENV)/.installed  ## ingest, serving and cold-start benchmarks; write bench-results/*.json
	$(BIN)/tailor bench ingest
	$(BIN)/tailor bench serving
	$(BIN)/tailor bench coldstart

lint: lint-python  ## the Python lints, then cfn-lint and sam validate on the template
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --region us-east-1

lint-python: $(VENV)/.installed  ## ruff, the import contracts (pyproject.toml), functions' imports and import cycles
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python infra/import_rules.py

build: $(VENV)/.installed  ## sam build, without a container (the layers' Makefiles use the venv's pip)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build

deploy: build
	$(BIN)/sam deploy --guided

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Tailor needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -c constraints.txt
	touch $@

# A fresh environment with the newest versions pyproject.toml allows, the functions' packages held at the runtime
# layer's pins (constraints take no extras), frozen into constraints.txt; run the suite before committing it.
LOCK_VENV := .lock-venv
lock:  ## re-resolve constraints.txt: the newest versions pyproject.toml allows, the runtime layer's pins kept
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	sed 's/\[[^]]*\]//' layers/runtime/requirements.txt > $(LOCK_VENV)/runtime.txt
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]' -c $(LOCK_VENV)/runtime.txt
	{ sed -n '/^#/p' constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } > $(LOCK_VENV)/constraints.txt
	mv $(LOCK_VENV)/constraints.txt constraints.txt
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .aws-sam .pytest_cache .ruff_cache .hypothesis .tailor bench-results *.egg-info
