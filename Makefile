# Grimoire: `make run` sets everything up and starts the service; `make test` runs the suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: run install install-test test test-postgres test-redis lint format bench demo lock clean

$(VENV)/bin/python:
	"$$(scripts/find-python)" -m venv $(VENV)

# Reinstall only when the lock changes (the stamp file records the installed lock).
$(VENV)/.installed-main: requirements/main.lock | $(VENV)/bin/python
	$(PIP) install -r requirements/main.lock
	touch $@

$(VENV)/.installed-test: requirements/test.lock | $(VENV)/bin/python
	$(PIP) install -r requirements/test.lock
	touch $@ $(VENV)/.installed-main

install: $(VENV)/.installed-main

install-test: $(VENV)/.installed-test

## run: create the venv, install, migrate, create an admin, load demo data, start web + workers
run: install
	$(PY) manage.py bootstrap
	@echo "Starting web and workers (Ctrl-C stops them all)..."
	exec $(PY) scripts/serve.py Procfile

## test: install test dependencies and run the whole suite (SQLite unless DATABASE_URL is set)
test: install-test
	$(VENV)/bin/pytest -n $${PYTEST_WORKERS:-2} $(PYTEST_ARGS)

test-postgres: install-test
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(VENV)/bin/pytest -n $${PYTEST_WORKERS:-2} $(PYTEST_ARGS)

test-redis: install-test
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15} $(VENV)/bin/pytest -m redis $(PYTEST_ARGS)

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install-test
	@for script in bench/*.py; do case $$script in *stub_*|*_common*) continue;; esac; echo "== $$script"; $(PY) $$script || exit 1; done

demo: install
	$(PY) manage.py bootstrap --no-static
	$(PY) manage.py load_demo --force

## lock: re-resolve the pinned dependency files from pyproject.toml
lock: | $(VENV)/bin/python
	$(PIP) install pip-tools
	$(VENV)/bin/pip-compile -q --strip-extras --output-file requirements/main.lock pyproject.toml
	$(VENV)/bin/pip-compile -q --strip-extras --extra test --output-file requirements/test.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
