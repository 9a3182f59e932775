# replaypipe — the two commands: `make run` and `make test`.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help setup run test lint typecheck pytest demo bench clean

help:
	@echo "make run    set up what is missing, start Kafka + ingest + masker + sink (Ctrl-C stops)"
	@echo "make test   set up what is missing, run ruff, mypy and the whole pytest suite"
	@echo "make demo   send generated sessions to a running 'make run' and list them"

setup:
	@./scripts/bootstrap.sh
	@./scripts/setup_deploy_tools.sh
	@./scripts/setup_browser.sh

run: setup
	@$(PY) -m services.cli run var

lint: setup
	$(VENV)/bin/ruff check services tests bench deploy/tools

typecheck: setup
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict --python-executable .cache/deploy-tools/venv/bin/python deploy/tools/validate_manifests.py

pytest: setup
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

demo: setup
	@$(PY) -m services.cli demo

clean:
	rm -rf var test-output
