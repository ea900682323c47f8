# nstlib: every target creates the virtual environment on first use (pip only, offline-safe
# apart from the package registry).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
NOTEBOOKS = $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: install demo test test-avx2 unit nbval notebooks bench figure lint clean

# Two pytest workers (pytest-xdist): the machines this is written for have 2 cores. loadfile
# keeps one test file or notebook on one worker, so nbval runs a notebook's cells in order.
TEST_WORKERS ?= 2
PYTEST = $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make demo: stylize the bundled samples into out/demo/
demo: install
	$(BIN)/nst demo -o out/demo

## make test: lint, unit tests and every notebook under nbval in quick mode
test: install lint
	NST_QUICK=1 $(PYTEST) tests $(if $(NOTEBOOKS),--nbval-lax --nbval-current-env $(NOTEBOOKS))

## make test-avx2: the same suite with oneDNN capped at AVX2, i.e. the kernels an AVX2-only laptop
## CPU gets (oneDNN reads ONEDNN_MAX_CPU_ISA), on any x86 machine
test-avx2:
	ONEDNN_MAX_CPU_ISA=AVX2 $(MAKE) test

unit: install
	$(PYTEST) tests

nbval: install
	NST_QUICK=1 $(PYTEST) --nbval-lax --nbval-current-env $(NOTEBOOKS)

## make notebooks: re-execute every notebook in full mode, in place (the outputs readers see),
## then store large figures as JPEG and drop stderr log lines (tools/compact_notebook_figures.py).
## TF_CPP_MIN_LOG_LEVEL=3 quiets TensorFlow's start-up lines (importing nstlib does not set it).
notebooks: install
	for nb in $(NOTEBOOKS); do \
	  NST_QUICK=0 TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1800 "$$nb" || exit 1; \
	done
	$(BIN)/python tools/compact_notebook_figures.py $(NOTEBOOKS)

## make bench: speed and memory measurements, one JSON document on stdout
bench: install
	$(BIN)/python benchmarks/run_all.py

## make figure: the README's figure (bundled pairs and one panel per control, 3-5 min on a
## 2-core CPU) into docs/readme_figure.jpg, its caption into docs/readme_figure.md
figure: install
	NST_QUICK=0 TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python tools/readme_figure.py -o docs/readme_figure.jpg

lint: install
	$(BIN)/ruff check $(wildcard nstlib tests benchmarks tools data notebooks/conftest.py)

clean:
	rm -rf $(VENV) out
