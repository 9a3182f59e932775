# replaypipe — `make run` and `make test`; `make check` for the inner loop.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help setup setup-python setup-deploy-tools setup-browser run test check lint typecheck \
	pytest demo bench clean bench-pipeline

help:
	@echo "make run    set up what is missing, start Kafka + ingest + masker + sink + console (Ctrl-C stops;"
	@echo "            a crashed service is restarted)"
	@echo "make test   set up what is missing, run ruff, mypy and the whole pytest suite"
	@echo "make check  ruff, mypy and the unit tests only: no broker, no browser, under a minute"
	@echo "make demo   send generated sessions to a running 'make run' and list them"
	@echo "make bench-pipeline  the whole pipeline's sustained rate next to Kafka's own tools"
	@echo "            (a few minutes; BENCH_PIPELINE_ARGS=--quick for ~2)"

# Each part of the setup is idempotent and skips what is already there; a target
# asks only for the parts it uses (lint and check need no browser, no Kafka run).
setup: setup-python setup-deploy-tools setup-browser

setup-python:
	@./scripts/bootstrap.sh

setup-deploy-tools:
	@./scripts/setup_deploy_tools.sh

setup-browser:
	@./scripts/setup_browser.sh

run: setup
	@$(PY) -m services.cli run var

lint: setup-python
	$(VENV)/bin/ruff check services tests bench deploy/tools

typecheck: setup-python setup-deploy-tools
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict --python-executable .cache/deploy-tools/venv/bin/python deploy/tools/validate_manifests.py

pytest: setup
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

check: setup-python
	$(VENV)/bin/ruff check services tests bench deploy/tools
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q tests/unit

demo: setup
	@$(PY) -m services.cli demo

# Issue 16: ingest -> masker -> sink on one machine against ProducerPerformance /
# ConsumerPerformance on the same broker (docs/benchmarks.md, section pipeline).
bench-pipeline: setup-python
	$(PY) -m bench.bench_pipeline $(BENCH_PIPELINE_ARGS)

clean:
	rm -rf var test-output

# The soak (not in `make test`): 3 brokers, 2 maskers, 2 sinks, 1M events, kill -9s;
# `make soak SOAK_ARGS=--quick` for 100k. See docs/benchmarks.md (soak).
.PHONY: soak
soak: setup-python
	$(PY) -m bench.soak.run $(SOAK_ARGS)

# What a second masker and a second sink cost (issue 16 item 3; not in `make test`):
# 1 vs 2 workers per stage at a fixed rate, alternating rounds, idle CPU apart.
# `make bench-scaleout BENCH_SCALEOUT_ARGS=--quick` for ~8 min. docs/benchmarks.md (soak).
.PHONY: bench-scaleout
bench-scaleout: setup-python
	$(PY) -m bench.bench_scaleout $(BENCH_SCALEOUT_ARGS)
