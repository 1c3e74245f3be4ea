# spconnect: `make run` to try it locally, `make test` to check it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# Test processes (pytest-xdist). Much of the suite waits on servers and subprocesses it starts, so
# two processes finish in about two thirds of the time even on two cores. At most 6 (each takes a
# Redis database of its own, 10 + N), or 0 to run in this process only (needed for --pdb).
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -e ./clients/python
	@touch $@

install: $(VENV)/.installed ## Create .venv and install spconnect, its Python client (clients/python) and its test tools

.env:
	$(PYTHON) bin/write_env.py .env

setup: install .env ## Install, write .env, migrate, seed the demo tenant
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo

# bin/run_dev.sh migrates, seeds the demo tenant, prints the demo seller's link, then serves. exec:
# make passes a SIGTERM of its own to the script itself, not to a shell that would die without it.
run: install .env ## Set everything up and serve with the local Amazon sandbox on HOST:PORT (default 127.0.0.1:8000; make run PORT=8101)
	@PYTHON=$(PY) exec bash bin/run_dev.sh $(HOST) $(PORT)

# axe-core for the browser tests' accessibility check, pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		echo "npm ci: axe-core for the browser tests' accessibility check"; \
		npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: the browser tests cannot run their accessibility check (install Node.js and npm)."; \
	fi

test: install node_modules/.installed ## Run the test suite, browser tests included (SQLite and the ORM broker unless DATABASE_URL/REDIS_URL say otherwise)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-browser: install node_modules/.installed ## Run only the browser tests (Chromium at /usr/bin/chromium), one line each
	$(PY) -m pytest -v -m browser tests/browser $(PYTEST_ARGS)

serve: install ## Production: migrate, collect static, then gunicorn + the django-q2 workers (manage.py worker) (env: docs/deployment.md)
	bin/serve.sh all

lint: install ## ruff, mypy with django-stubs (configuration: pyproject.toml) and no model change without its migration
	$(PY) -m ruff check .
	$(PY) -m mypy
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

api-check: install ## Schemathesis against the API's OpenAPI description on a live server (no 5xx, every answer as described)
	bash bin/api_check.sh

bench: install ## Run every benchmark script (bench/bench_*.py) and write docs/benchmarks.md
	@set -e; for script in bench/bench_*.py; do \
		grep -q '__main__' $$script || continue; \
		echo "== $$script"; \
		$(PY) $$script; \
	done

.PHONY: help install setup run lint test test-browser api-check serve bench
