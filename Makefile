# Two commands do everything on a fresh machine:  make run  |  make test
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export SITE_URL ?= http://$(HOST):$(PORT)

.PHONY: run test test-faults test-fast test-browser bench lint check-deploy audit migrate demo venv clean help

help:
	@echo "make run          start the platform (SQLite, no servers needed): web + worker + scheduler"
	@echo "make test         run the whole test suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set)"
	@echo "make test-faults  only the fault-injection tests (real workers; part of make test; a few minutes)"
	@echo "make test-browser only the end-to-end browser tests (Chromium)"
	@echo "make bench        run every benchmark at a small size (needs DATABASE_URL and REDIS_URL)"
	@echo "make lint         ruff + migrations check"
	@echo "make audit        pip-audit of the installed packages (fails on a known vulnerability)"

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

venv: $(VENV)/.installed

var/demo-password:
	@mkdir -p var
	@$(PY) -c "import secrets; print(secrets.token_urlsafe(9))" > $@

migrate: venv
	$(BIN)/python manage.py migrate --noinput

demo: migrate var/demo-password
	@$(BIN)/python manage.py create_demo --password "$$(cat var/demo-password)"

run: demo
	@echo ""
	@echo "  ┌──────────────────────────────────────────────────────────────"
	@echo "  │ Northwind CDP is starting at  $(SITE_URL)/"
	@echo "  │ Sign in as  demo@example.com  with password  $$(cat var/demo-password)"
	@echo "  │ API docs:   $(SITE_URL)/api/v1/docs      Stop with Ctrl-C"
	@echo "  └──────────────────────────────────────────────────────────────"
	@echo ""
	@HOST=$(HOST) PORT=$(PORT) $(BIN)/honcho start -f Procfile.dev

# The fault tests (tests/faults, RELIABILITY.md F1-F16) start real worker processes and
# take a few minutes: a plain pytest leaves them out (tests/faults/conftest.py); `make test` runs
# them as its second step and fails if either step failed.
# The main suite runs on TEST_WORKERS pytest-xdist workers (auto: one a core; each worker has its
# own test database, Redis db and var dir: cdp/settings.py); the fault tests stay serial.
# Both print their slowest tests, so a CI log shows where its minutes went.
TEST_WORKERS ?= auto
test: venv
	@rc=0; $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15 || rc=$$?; \
	$(MAKE) --no-print-directory test-faults || { r=$$?; [ $$rc -ne 0 ] || rc=$$r; }; \
	exit $$rc

test-faults: venv
	$(BIN)/python -m pytest -m faults tests/faults --durations=10

test-browser: venv
	$(BIN)/python -m pytest -m browser

bench: venv
	$(BIN)/python -m bench all

lint: venv
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

check-deploy: venv
	DEBUG=0 SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" ALLOWED_HOSTS=cdp.example.com \
		$(BIN)/python manage.py check --deploy --fail-level WARNING

# Fails on a known vulnerability; says AUDIT SKIPPED (exit 0) when the vulnerability service cannot
# be reached, or fails then too with AUDIT_REQUIRED=1 (.ci/audit.py).
audit: venv
	$(BIN)/python .ci/audit.py

clean:
	rm -rf var/celery var/cache var/staticfiles
