# nslviz — the two commands are `make demo` and `make test`; both work on a fresh clone, CPU only, offline
# (apart from the package registry).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= out
# transparent huge pages for torch's large CPU tensors (see nslviz/__init__.py); 0 to opt out
export THP_MEM_ALLOC_ENABLE ?= 1

.PHONY: setup demo test test-unit test-notebooks lab bench clean
.PHONY: site test-browser

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nslviz needs Python 3.11 or newer (the pinned numpy, pandas and ipython do); $(PYTHON) is Python " + sys.version.split()[0] + ": run make PYTHON=python3.11 (or newer)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "pip==26.3"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Spiral toy: train, print a one-line summary, execute notebook 01 headless and export it to HTML.
demo: setup
	$(PY) -m nslviz spiral
	NSLVIZ_QUICK=0 $(PY) -m nslviz export-notebook notebooks/01_spiral_toy.ipynb --out $(DEMO_OUT)

# Unit tests and every notebook under nbval, in quick mode.
test: setup
	NSLVIZ_QUICK=1 $(PY) -m pytest

test-unit: setup
	NSLVIZ_QUICK=1 $(PY) -m pytest tests

test-notebooks: setup
	NSLVIZ_QUICK=1 $(PY) -m pytest notebooks

lab: setup
	$(VENV)/bin/jupyter lab notebooks

# Speed benchmarks; each prints one JSON object and writes it to benchmarks/results/.
bench: setup
	$(PY) benchmarks/bench_spiral.py
	$(PY) benchmarks/bench_inner_loop.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_backbones.py
	$(PY) benchmarks/bench_augment.py
	$(PY) benchmarks/bench_nsl.py
	$(PY) benchmarks/bench_regression.py

# Every notebook executed in quick mode as a standalone page, with an index of thumbnails and times:
# site/index.html. `python -m nslviz site --only 01_spiral_toy` rebuilds one page.
site: setup
	NSLVIZ_QUICK=1 $(PY) -m nslviz site --out site

# Browser tests (tests/browser, not part of `make test`): JupyterLab runs notebook 01 in a headless
# Chromium (sliders, Play), and every page of site/ is opened offline (built for notebook 01 alone
# when site/ is missing). Playwright drives the system's Chromium: Debian's, installed here with
# apt-get when missing; without it and without apt-get, the target says so and skips.
test-browser: setup
	@$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet -c constraints.txt -e ".[browser]"
	@if [ -z "$$NSLVIZ_CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "test-browser: SKIPPED: no Chromium, and no apt-get run as root to install it (install chromium, or set NSLVIZ_CHROMIUM to a Chromium binary)"; \
	    exit 0; \
	  fi; \
	fi; \
	test -f site/index.html || NSLVIZ_QUICK=1 $(PY) -m nslviz site --out site --only 01_spiral_toy; \
	NSLVIZ_QUICK=1 $(PY) -m pytest tests/browser

clean:
	rm -rf out runs site .pytest_cache
