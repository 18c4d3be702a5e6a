# nslviz — the two commands are `make demo` and `make test`; both work on a fresh clone, CPU only, offline
# (apart from the package registry). `make test-fast` is the edit loop (unit tests without the slow ones).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= out
# JupyterLab's kernels run the notebooks in quick mode unless told otherwise: make lab NSLVIZ_QUICK=0
NSLVIZ_QUICK ?= 1
# transparent huge pages for torch's large CPU tensors (see nslviz/__init__.py); 0 to opt out
export THP_MEM_ALLOC_ENABLE ?= 1
# the git filter that strips notebook outputs and execution counts on `git add` (see .gitattributes)
NBSTRIPOUT := '$(abspath $(PY))' -m nbstripout --keep-id

.PHONY: setup check-python demo test test-fast test-unit test-notebooks lab results bench clean
.PHONY: site test-browser

setup: check-python $(STAMP)

# PYTHON=... given on the command line must be the Python of an existing .venv: make never replaces a
# virtual environment by itself, so a mismatch is named with what to do
check-python:
ifeq ($(origin PYTHON),command line)
	@if [ -x $(PY) ]; then \
	  want=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') || exit 2; \
	  have=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  if [ "$$want" != "$$have" ]; then \
	    if ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	      echo "PYTHON=$(PYTHON) is Python $$want, and nslviz needs Python 3.11 or newer: leave PYTHON out to keep $(VENV)'s Python $$have, or give a newer Python" >&2; exit 2; fi; \
	    echo "$(VENV) was made with Python $$have, but PYTHON=$(PYTHON) is Python $$want: run rm -rf $(VENV) to rebuild it with $(PYTHON), or leave PYTHON out to keep Python $$have" >&2; exit 2; fi; fi
endif

# setuptools prints an informational banner on every editable install (a folder named like the package
# in the working directory may shadow it): silenced; every other warning is still shown
EDITABLE_INSTALL = PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -c constraints.txt -e

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nslviz needs Python 3.11 or newer (the pinned numpy, pandas and ipython do); $(PYTHON) is Python " + sys.version.split()[0] + ": run make PYTHON=python3.11 (or newer)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "pip==26.3"
	$(EDITABLE_INSTALL) ".[dev]"
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean "$(NBSTRIPOUT)" && git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && git config diff.ipynb.textconv "$(NBSTRIPOUT) -t" && \
	  echo "git: notebook outputs are stripped on git add (nbstripout filter, see .gitattributes)"; fi
	touch $(STAMP)

# Spiral toy, trained once: execute notebook 01 headless, export it to HTML, print its accuracies.
demo: setup
	NSLVIZ_QUICK=0 $(PY) -m nslviz export-notebook notebooks/01_spiral_toy.ipynb --out $(DEMO_OUT) --show mn_test_acc

# Unit tests and every notebook under nbval, in quick mode, on TEST_WORKERS pytest-xdist workers
# (one torch thread each; see conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: setup
	NSLVIZ_QUICK=1 $(PY) -m pytest -n $(TEST_WORKERS)

# The edit loop: unit tests only, without those marked slow (the notebooks run under `make test`).
test-fast: setup
	NSLVIZ_QUICK=1 $(PY) -m pytest -n $(TEST_WORKERS) tests -m "not slow" -q

test-unit: setup
	NSLVIZ_QUICK=1 $(PY) -m pytest -n $(TEST_WORKERS) tests

test-notebooks: setup
	NSLVIZ_QUICK=1 $(PY) -m pytest -n $(TEST_WORKERS) notebooks

# LAB_ARGS: more options for JupyterLab (e.g. LAB_ARGS=--no-browser); run as root (a container), it
# needs --allow-root, which is added then
LAB_ARGS ?=
lab: setup
	NSLVIZ_QUICK=$(NSLVIZ_QUICK) $(VENV)/bin/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

# RESULTS.md from benchmarks/results/*.json and the papers' numbers (nslviz.paper).
results: setup
	$(PY) benchmarks/make_results.py

# The CPU speed benchmarks, each with the command that wrote its file in benchmarks/results/ (RESULTS.md
# quotes it); each prints one JSON object and writes that file (then: make results). On a GPU:
# bash benchmarks/gpu_check.sh.
bench: setup
	$(PY) benchmarks/bench_spiral.py
	$(PY) benchmarks/bench_spiral_interactive.py --repeats 2
	$(PY) benchmarks/bench_inner_loop.py
	$(PY) benchmarks/bench_train.py --device cpu --repeats 9
	$(PY) benchmarks/bench_backbones.py --threads 1
	$(PY) benchmarks/bench_augment.py
	$(PY) benchmarks/bench_nsl.py --threads 1
	$(PY) benchmarks/bench_regression.py --threads 1
	$(PY) benchmarks/bench_feature_heads.py
	$(PY) benchmarks/bench_threads.py
	$(PY) benchmarks/bench_reader.py
	$(PY) benchmarks/bench_few_shot.py

# Every notebook executed in quick mode as a standalone page, with an index of thumbnails and times:
# site/index.html. `python -m nslviz site --only 01_spiral_toy` rebuilds one page.
site: setup
	@$(PY) -c "import playwright" 2>/dev/null || $(EDITABLE_INSTALL) ".[browser]"   # for the thumbnails
	NSLVIZ_QUICK=1 $(PY) -m nslviz site --out site

# Browser tests (tests/browser, not part of `make test`): JupyterLab runs notebook 01 in a headless
# Chromium (sliders, Play), and every page of site/ is opened offline (built for notebook 01 alone
# when site/ is missing). Playwright drives the system's Chromium: Debian's, installed here with
# apt-get when missing; without it and without apt-get, the target says so and skips.
test-browser: setup
	@$(PY) -c "import playwright" 2>/dev/null || $(EDITABLE_INSTALL) ".[browser]"
	@if [ -z "$$NSLVIZ_CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null \
	    && ! command -v google-chrome >/dev/null && ! command -v google-chrome-stable >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "test-browser: SKIPPED: no Chromium, and no apt-get run as root to install it (install chromium, or set NSLVIZ_CHROMIUM to a Chromium binary)"; \
	    exit 0; \
	  fi; \
	fi; \
	site="$${NSLVIZ_SITE:-site}"; grep -qs 'src="thumbnails/' "$$site/index.html" \
	  || NSLVIZ_QUICK=1 $(PY) -m nslviz site --out "$$site" --only 01_spiral_toy; \
	NSLVIZ_QUICK=1 $(PY) -m pytest tests/browser

# What the commands regenerate: the demo's pages, the site, pytest's cache. Never runs/: training runs
# (hours on a GPU, resumable) are deleted by hand, run by run.
clean:
	rm -rf out site .pytest_cache
	@if [ -d runs ]; then echo "runs/ kept: it holds training runs; delete a run's folder yourself when it is no longer needed"; fi
