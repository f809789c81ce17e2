# The two commands: `make convert` and `make test`. Both set everything up through `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_STAMP := $(VENV)/.torch
TF_STAMP := $(VENV)/.tensorflow
# The frameworks the readers need, pinned once: the torch and tf extras of pyproject.toml.
TORCH_PIN := $(shell sed -n 's/^torch = \["\([^"]*\)"\].*/\1/p' pyproject.toml)
TF_PIN := $(shell sed -n 's/^tf = \["\([^"]*\)"\].*/\1/p' pyproject.toml)
# The oldest zarr pyproject.toml allows (its "zarr>=X" bound), in a second small venv.
ZARR_OLDEST := $(shell sed -n 's/^ *"zarr>=\([0-9.]*\).*/\1/p' pyproject.toml)
OLD_VENV := .venv-zarr-oldest
OLD_STAMP := $(OLD_VENV)/.installed
ZARR_COMPAT_TESTS = $(shell grep -rl --include='test_*.py' 'mark.zarr_compat' tests)

.PHONY: install convert torch tf test test-zarr-oldest lint bench docs clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q reacture_convert  # as a wheel install would: no command compiles it again
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
	@echo "To train on converted data: make torch (or make tf), then the README's Training section."

## PyTorch for the readers (the README's training section and the readers' tests): the torch
## extra's pin, installed into .venv beside the editable package (never `pip install .[torch]`,
## which would replace it).
torch: $(TORCH_STAMP)

## TensorFlow for its reader: the tf extra's pin, after PyTorch, with the torch and numpy already
## installed as constraints, so the install fails rather than replace them.
tf: $(TF_STAMP)

$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet '$(TORCH_PIN)'
	touch $(TORCH_STAMP)

$(TF_STAMP): $(TORCH_STAMP)
	$(BIN)/python -m pip freeze | grep -E '^(numpy|torch)==' > $(VENV)/.tf-constraints
	$(BIN)/python -m pip install --quiet -c $(VENV)/.tf-constraints '$(TF_PIN)'
	touch $(TF_STAMP)

# The report test looks at the HTML in a headless browser: Debian's chromium (apt-get, as root).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (for the report test)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make test needs a chromium command for the report test: apt-get install chromium"; exit 1; fi; }

# The package, zarr==$(ZARR_OLDEST) and pytest, everything else pinned to what .venv holds (the
# main venv has the newest zarr allowed): only zarr differs between the two runs.
$(OLD_STAMP): $(STAMP)
	rm -rf $(OLD_VENV)
	$(BIN)/python -m venv $(OLD_VENV)
	$(BIN)/python -m pip freeze --exclude-editable | grep -iv '^zarr==' > $(OLD_VENV)/constraints.txt
	$(OLD_VENV)/bin/python -m pip install --quiet -c $(OLD_VENV)/constraints.txt \
	  -e . 'zarr==$(ZARR_OLDEST)' pytest pytest-timeout hypothesis
	touch $(OLD_STAMP)

## The tests marked zarr_compat (Zarr bytes compared with zarr-python's, Zarr read by it) with
## the oldest zarr allowed; the full suite runs them with the newest.
test-zarr-oldest: $(OLD_STAMP)
	$(OLD_VENV)/bin/python -c "import zarr; from packaging.version import Version as V; \
	  assert V(zarr.__version__) == V('$(ZARR_OLDEST)'), zarr.__version__"
	$(OLD_VENV)/bin/python -m pytest -q -p no:cacheprovider -m zarr_compat $(ZARR_COMPAT_TESTS)

# The frameworks (torch, then tf) and the oldest-zarr venv and its tests are independent: two at
# once (mostly pip unpacking and one small test run), then the suite on both cores.
test: install
	$(MAKE) --no-print-directory -j2 $(TF_STAMP) browser test-zarr-oldest
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check reacture_convert tests benchmarks
	$(BIN)/ruff format --check reacture_convert tests benchmarks
	$(BIN)/mypy

## Regenerate the finding-code table of docs/cli.md from reacture_convert/findings.py.
docs: install
	$(BIN)/python -c "import re, pathlib; from reacture_convert.findings import codes_markdown as t; p = pathlib.Path('docs/cli.md'); s = p.read_text(); a, b = s.index('-->', s.index('<!-- codes:start')) + 3, s.index('<!-- codes:end -->'); p.write_text(s[:a] + chr(10) + t() + chr(10) + s[b:])"

bench: install $(TORCH_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(OLD_VENV) data .pytest_cache .mypy_cache .hypothesis

## Mutation testing (not part of `make test`): the curated mutants of issue #25, then every
## automatic mutant of MUTATE (comparisons, and/or, +/-, not, constants, deleted calls), each
## against the tests of its file; prints what no test kills (docs/mutation.md). Hours for the
## whole scope on 2 cores: MUTATION_LIMIT=N samples N mutants a file, MUTATE=a file narrows it.
MUTATE ?= reacture_convert/read/verify.py reacture_convert/writers reacture_convert/output
MUTATION_LIMIT ?=
.PHONY: mutation
mutation: install
	mkdir -p data
	$(BIN)/python tools/mutation.py --auto $(MUTATE) $(if $(MUTATION_LIMIT),--limit $(MUTATION_LIMIT)) --markdown data/mutation-results.md
