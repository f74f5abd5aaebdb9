# resilience — the two set-up commands are `make demo` and `make test` (as root on Debian/Ubuntu).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
DEB_PKGS   := postgresql postgresql-contrib pgbackrest redis-server prometheus stress-ng patroni etcd-server stunnel4 docker-compose
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export RESILIENCE_LAB_DIR ?= $(CURDIR)/.lab

.PHONY: help deps venv lab-up lab-down lab-status up up-celery down demo test lint typecheck bench bench-kill-matrix

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps:  ## install the Debian packages the lab needs (when missing)
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP)  ## create .venv and install the package with its Python deps

lab-up: deps venv  ## start the local lab (state in $RESILIENCE_LAB_DIR, default .lab/)
	$(BIN)/resilience lab up

lab-down:  ## stop the local lab
	@if [ -x $(BIN)/resilience ]; then $(BIN)/resilience lab down; fi

lab-status: venv  ## show the lab's endpoints
	$(BIN)/resilience lab status

up: lab-up  ## lab + Airflow standalone on http://127.0.0.1:8080 (says where the login is; lists the DAGs, chaos_abort on)
	$(BIN)/resilience airflow up

up-celery: lab-up  ## lab + the production topology on http://127.0.0.1:8080: CeleryExecutor (Redis broker), PostgreSQL metadata, api-server, scheduler, dag-processor, 2 triggerers, 2 workers; `make down` stops it
	$(BIN)/resilience airflow up --executor celery

down:  ## stop Airflow standalone and the lab
	@if [ -x $(BIN)/resilience ]; then $(BIN)/resilience airflow down; $(BIN)/resilience lab down; fi

demo: lab-up  ## drill, SLO verification (after 45 s: its window and the one before it hold traffic), short chaos campaign, then lose the primary region: DR activation (an incident) and failback, post-mortem follow-ups; verdicts + reports
	$(BIN)/resilience airflow down
	$(BIN)/resilience airflow up
	$(BIN)/resilience airflow run dr_monthly_drill --conf '{"full_drill": true}' && \
	  sleep 45 && $(BIN)/resilience airflow run slo_verify --conf '{"environment": "lab", "window_h": 0.01}' && \
	  $(BIN)/resilience airflow run chaos_campaign \
	    --conf '{"scenarios": ["pod-kill", "redis-unavailable", "s3-5xx"], "duration": 30}' && \
	  $(BIN)/resilience lab region isolate primary && \
	  { $(BIN)/resilience airflow run dr_activation; s=$$?; $(BIN)/resilience lab region restore primary; \
	    test $$s -eq 0; } && sleep 20 && \
	  $(BIN)/resilience airflow run dr_failback \
	    --conf '{"stable_hours": 0.005, "steps": [25, 50, 100], "interval_s": 15, "threshold": 5}' && \
	  $(BIN)/resilience airflow run postmortem_followups; \
	  status=$$?; $(BIN)/resilience airflow down; \
	  echo "The lab is still up (make lab-status); make lab-down stops it."; exit $$status

test: deps venv  ## ruff, mypy, then unit + DAG integrity + integration tests (the tests start and stop their own lab)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: venv  ## ruff
	$(BIN)/ruff check .

typecheck: venv  ## mypy (settings and files in pyproject.toml's [tool.mypy])
	$(BIN)/mypy

bench: venv  ## benchmarks side by side with their references (each brings up a lab of its own; see bench/), then one summary table
	rm -rf .bench
	$(BIN)/python bench/abort_latency.py; \
	  $(BIN)/python bench/drill.py; \
	  $(BIN)/python bench/orchestration.py; \
	  $(BIN)/python bench/canary.py; \
	  $(BIN)/python bench/failover.py; \
	  $(BIN)/python bench/archive_lag.py; \
	  $(BIN)/python bench/summary.py

bench-kill-matrix: venv  ## SIGKILL Airflow parts at each point of each fault (60 cases, hours; filters: KILL_MATRIX_ARGS="--victims airflow --points guard")
	$(BIN)/python bench/kill_matrix.py $(KILL_MATRIX_ARGS)
