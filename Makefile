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
	@echo
	@echo "Outputs are in data/converted/ (catalog.parquet, zarr/, rows/, frames/). Look at them with:"
	@echo "  $(BIN)/reacture-convert verify data/converted --sources"
	@echo "  $(BIN)/python -c \"import pyarrow.parquet as pq; print(pq.read_table('data/converted/catalog.parquet').select(['session','status','n_frames','n_rows']))\""
	@echo "  $(BIN)/python -c \"import zarr; g = zarr.open_group('data/converted/zarr/reacture_1795637238001.zarr', mode='r'); print(g['frames'].info)\""

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check reacture_convert tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .hypothesis
