# The two commands: `make run` and `make test`. Everything else is set-up.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3

.PHONY: setup run test lint debs recorder bench clean

setup: $(STAMP) debs recorder

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian packages the tests use: nginx serves gzip files for the compression
# tests and is the reference of the benchmarks; chromium runs the browser tests
# (Playwright drives it, never downloads one); wrk drives the benchmarks.
debs:
	@missing=""; command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The recorder bundle and the dashboard/player assets: npm packages from
# package-lock.json, then esbuild. Rebuilt only when the lock file, the build
# script or a source changes.
RECORDER := gateway/web/dist/recorder.js
NPM_STAMP := node_modules/.installed

recorder: $(RECORDER)

$(NPM_STAMP): package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(RECORDER): $(NPM_STAMP) gateway/web/build.mjs $(wildcard gateway/web/src/*.js) \
		$(wildcard gateway/web/app/*.js gateway/web/app/*.css)
	npm run build

run: setup
	$(BIN)/gateway demo

# Every benchmark scenario side by side (about 10 minutes): benchmarks/results/<date>.*
bench: setup
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info node_modules gateway/web/dist
