# spconnect: `make run` to try it locally, `make test` to check it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## Create .venv and install spconnect with its test tools

.env:
	$(PYTHON) bin/write_env.py .env

setup: install .env ## Install, write .env, migrate, seed the demo tenant
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo

run: setup ## Set everything up and serve http://127.0.0.1:8000 with the local Amazon sandbox
	@$(PY) manage.py invite --tenant demo --name "Demo Seller" --email seller@example.com | tail -n1 | sed 's/^/Invitation link for a demo seller: /'
	@bash bin/run_dev.sh $(HOST) $(PORT)

test: install ## Run the test suite (SQLite and the ORM broker unless DATABASE_URL/REDIS_URL say otherwise)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install ## Run every benchmark script (bench/bench_*.py) and write docs/benchmarks.md
	@set -e; for script in bench/bench_*.py; do \
		grep -q '__main__' $$script || continue; \
		echo "== $$script"; \
		$(PY) $$script; \
	done

.PHONY: help install setup run test bench
