# Tailor's everyday commands. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast bench lint build deploy clean

run: $(VENV)/.installed  ## start the local AWS, replay a simulated day of shoppers, stay up
	$(BIN)/tailor local up

test: $(VENV)/.installed  ## the whole suite: unit, integration (moto), end-to-end, template lint and build
	$(BIN)/pytest

test-fast: $(VENV)/.installed  ## everything but the template build
	$(BIN)/pytest -m "not slow"

bench: $(VENV)/.installed  ## ingest and serving benchmarks; write bench-results/*.json
	$(BIN)/tailor bench ingest
	$(BIN)/tailor bench serving

lint: $(VENV)/.installed
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --region us-east-1

build: $(VENV)/.installed  ## sam build, without a container (the layers' Makefiles use the venv's pip)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build

deploy: build
	$(BIN)/sam deploy --guided

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Tailor needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .hypothesis .tailor bench-results *.egg-info
