# The few verbs a newcomer needs. Everything runs from the repository root as root on Debian 12;
# whatever the machine lacks (Docker engine, debootstrap, the lab image, the venv) is installed here.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# molecule needs the venv's tools (ansible-config, ansible-playbook) on PATH.
export PATH := $(BIN):$(PATH)
export ANSIBLE_FORCE_COLOR ?= 1
ALL_SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# The long ones first, so that the last to start is a short one (tests/run-molecule.sh runs
# MOLECULE_JOBS at a time).
LONG_SCENARIOS := app postgres backup
SCENARIOS ?= $(filter $(LONG_SCENARIOS),$(ALL_SCENARIOS)) $(filter-out $(LONG_SCENARIOS),$(ALL_SCENARIOS))
export MOLECULE_JOBS ?= 2

.PHONY: help venv engine lab-image test-deps lab dev dev-down lint unit molecule test bench bench-backups clean

help:
	@echo "make dev       bring up the development platform (lab containers + site.yml)"
	@echo "make dev-down  remove every lab container and the lab network"
	@echo "make test      yamllint, ansible-lint, ansible-test sanity, pytest, every molecule scenario ($(SCENARIOS))"
	@echo "make lint | unit | molecule SCENARIOS=common | bench | bench-backups | lab-image | venv"

# The venv is rebuilt when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
	@python3 -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

engine:
	@lab/docker-engine.sh

lab-image: engine
	@lab/build-image.sh

# PostgreSQL 15, Redis, Node.js and npm on this machine for the host-side tests (no server is left running).
test-deps:
	@lab/test-deps.sh

lab: venv lab-image
	ansible-playbook playbooks/lab.yml

# The health gate last: make dev succeeds only when every service answers within the guide's targets.
dev: lab
	ansible-playbook playbooks/site.yml
	ansible-playbook playbooks/health.yml
	@ansible-playbook playbooks/lab-summary.yml

dev-down: venv
	ansible-playbook playbooks/lab.yml -e lab_state=absent

# ansible-test sanity skips its shellcheck test, with a mere warning, where shellcheck is missing.
lint: venv
	yamllint --strict .
	ansible-lint
	@command -v shellcheck >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck; }
	tests/sanity/run.sh

# tests/integration includes the lab playbook's own lifecycle (engine and image) and the backup tests
# (a throwaway PostgreSQL cluster on loopback, moto's S3 in the test process). One worker per core,
# a test file per worker (its module fixtures, such as the AWS platform built once, stay whole):
# 9 minutes instead of 15 on two cores (docs/performance.md, "The test suite").
PYTEST_WORKERS ?= auto
unit: venv lab-image test-deps
	pytest -n $(PYTEST_WORKERS) --dist loadfile

molecule: venv lab-image
	tests/run-molecule.sh $(SCENARIOS)

test: lint unit molecule

# data_tier.py makes the lab anew and leaves it converged, which noop_site.py needs.
bench: lab bench-backups
	python3 bench/data_tier.py
	python3 bench/noop_site.py

bench-backups: venv test-deps
	python3 bench/backups.py
	python3 bench/mongodb_archive.py

clean: dev-down
	rm -rf .cache
