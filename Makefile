# The two commands: `make convert` and `make test`. Both set everything up through `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install convert test lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Convert the sample shipped in sample/ with pipelines/default.toml (data/incoming -> data/converted).
convert: install
	mkdir -p data/incoming
	cp -Rn sample/. data/incoming/
	$(BIN)/reacture-convert run pipelines/default.toml

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check reacture_convert tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .hypothesis
