# One entry point: `make book` builds the book, `make test` runs every test.
# Both create (or reuse) the virtual environment .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch. On this project's machines pip finds it on local disk; elsewhere
# use e.g. make TORCH="torch --index-url https://download.pytorch.org/whl/cpu".
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
# The book and its checks run on the CPU profile unless told otherwise.
export FEWSHOT_TH_PROFILE ?= cpu
# Notebook kernels must use matplotlib's inline backend: a non-interactive backend chosen
# through the environment would silently drop every figure from the book.
unexport MPLBACKEND

.PHONY: venv book check-book test bench figures outputs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	touch $(STAMP)

# Build the HTML book, executing every chapter (cached: unchanged chapters are not re-run),
# then check it as a reader meets it. The pages carry their own MathJax, RequireJS and widget
# manager (fetched once from the npm registry; book/_ext/local_js.py), so the book reads
# without internet; FEWSHOT_TH_BOOK_JS=cdn loads them from CDNs instead.
book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	$(MAKE) check-book
	@echo "open _build/html/index.html"

# Every chapter page: no script from the internet, no broken image or link, no error text or
# Markdown printed as text; in headless chromium (when installed) no raw TeX and every widget
# rendered. SHOTS=dir also saves a screenshot of each chapter.
check-book:
	$(BIN)/python book/check_html.py _build/html $(if $(SHOTS),--shots $(SHOTS))

# Every test in one pytest run: unit tests, every chapter under nbval (pytest options in
# pyproject.toml) and a build of the book from the chapters' stored outputs that must have
# no warnings (tests/test_book.py), after ruff has checked the code ([tool.ruff]).
# FEWSHOT_TH_QUICK=1 shortens the chapters' live experiments (same code, fewer steps).
test: $(STAMP)
	$(BIN)/ruff check fewshot_th tests book bench conftest.py
	FEWSHOT_TH_QUICK=1 $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/landmark_drawing.py
	$(BIN)/python bench/synthheads_speed.py

# Regenerate the committed figures.
figures: $(STAMP)
	$(BIN)/python book/figures/make_figures.py

# Run every chapter in full (as a reader would, about 9 minutes on 2 cores) and store all of
# its outputs in the notebook, so that GitHub, nbviewer and Colab show them before running.
outputs: $(STAMP)
	$(BIN)/python book/refresh_outputs.py

clean:
	rm -rf _build .pytest_cache
