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
# How Ansible runs module calls on the lab's hosts for make dev and the molecule scenarios. mitogen:
# Mitogen for Ansible keeps one Python interpreter per host and hands it each call, where Ansible's
# own linear strategy starts a new one through `docker exec` for every call (the collection's
# strategy chajipoa.platform.mitogen_linear; ratios in docs/performance.md). linear: Ansible's own.
LAB_STRATEGY ?= mitogen
ifeq ($(LAB_STRATEGY),mitogen)
include lab/strategy/mitogen.env
lab dev molecule: export ANSIBLE_STRATEGY := $(ANSIBLE_STRATEGY)
else ifneq ($(LAB_STRATEGY),linear)
$(error LAB_STRATEGY is '$(LAB_STRATEGY)': mitogen or linear)
endif

.PHONY: help venv venv-runtime engine lab-image test-deps lab dev dev-down lint unit integration molecule test bench bench-backups clean

help:
	@echo "make dev       bring up the development platform (lab containers + site.yml)"
	@echo "make dev-down  remove every lab container and the lab network"
	@echo "make test      yamllint, ansible-lint, ansible-test sanity, pytest, every molecule scenario ($(SCENARIOS))"
	@echo "make lint | unit | integration | molecule SCENARIOS=common | bench | bench-backups | lab-image | venv"
	@echo "make unit      the offline tests alone (no root, no Docker engine, no servers)"
	@echo "LAB_STRATEGY=linear  Ansible's own strategy instead of Mitogen for make dev and molecule"

# The venv is rebuilt when a requirements file changes. make dev needs the runtime (requirements.txt)
# alone; the test targets add the test tools (requirements-dev.txt) to the same venv.
# Each step reports its time, so a slow first run shows where it went (docs/performance.md).
$(VENV)/.runtime: requirements.txt
	@SECONDS=0; \
	command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }; \
	python3 -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv $(VENV); }; \
	$(BIN)/pip install -q --upgrade pip; \
	$(BIN)/pip install -q -r requirements.txt; \
	echo "Python environment for make dev (requirements.txt) installed in $$SECONDS s"
	@touch $@

$(VENV)/.installed: $(VENV)/.runtime requirements-dev.txt
	@SECONDS=0; $(BIN)/pip install -q -r requirements-dev.txt; echo "test tools (requirements-dev.txt) installed in $$SECONDS s"
	@touch $@

venv-runtime: $(VENV)/.runtime

venv: $(VENV)/.installed

engine:
	@lab/docker-engine.sh

lab-image: engine
	@lab/build-image.sh

# PostgreSQL 15, Redis, Node.js and npm on this machine for the host-side tests (no server is left running).
test-deps:
	@lab/test-deps.sh

lab: venv-runtime lab-image
	ansible-playbook playbooks/lab.yml

# The health gate last: make dev succeeds only when every service answers within the guide's targets.
# Each run ends with the time its roles took (profile_roles), so a slow step of a first make dev
# (package installs, the first release's npm ci) shows where it is.
dev: export ANSIBLE_CALLBACKS_ENABLED := ansible.posix.profile_roles
dev: lab
	ansible-playbook playbooks/site.yml
	ansible-playbook playbooks/health.yml
	@ansible-playbook playbooks/lab-summary.yml

dev-down: venv-runtime
	ansible-playbook playbooks/lab.yml -e lab_state=absent

# ansible-test sanity skips its shellcheck test, with a mere warning, where shellcheck is missing.
lint: venv
	yamllint --strict .
	ansible-lint
	@command -v shellcheck >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck; }
	tests/sanity/run.sh

# tests/unit: plugin logic, templates, inventories and argument specs, offline; no root, no Docker engine,
# no servers. tests/integration: real servers and tools on this machine (PostgreSQL, Redis, Node.js,
# promtool and the exporters from lab/test-deps.sh, moto's AWS in the test process) and the lab
# playbook's own lifecycle (engine and image). One worker per core, a test file per worker (its module
# fixtures, such as the AWS platform built once, stay whole): 9 minutes instead of 15 on two cores
# (docs/performance.md, "The test suite").
PYTEST_WORKERS ?= auto
unit: venv
	pytest -n $(PYTEST_WORKERS) --dist loadfile tests/unit

integration: venv lab-image test-deps
	pytest -n $(PYTEST_WORKERS) --dist loadfile tests/integration

molecule: venv lab-image
	tests/run-molecule.sh $(SCENARIOS)

test: lint unit integration molecule

# data_tier.py makes the lab anew and leaves it converged, which noop_site.py needs.
bench: lab bench-backups
	python3 bench/data_tier.py
	python3 bench/noop_site.py

bench-backups: venv test-deps
	python3 bench/backups.py
	python3 bench/mongodb_archive.py

clean: dev-down
	rm -rf .cache
