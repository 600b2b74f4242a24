# tokengate: every target sets up what it needs, so a fresh clone needs only Python, Node and apt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
IDP_STAMP := tests/idp/node_modules/.installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist): the tiers mostly wait on real peers, so 4 fit 2 cores.
PYTEST_WORKERS ?= 4

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(IDP_STAMP): tests/idp/package-lock.json
	cd tests/idp && npm ci --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: system-deps
system-deps: ## Install redis-server, chromium, nginx and Apache with its OAuth modules from Debian when missing
	@# nginx: the forward-auth tests; apache2 + modules: the bench harness's own tests (tests/unit/test_bench_harness.py)
	@bash .ci/system-deps redis-server chromium nginx apache2 mod_auth_openidc mod_oauth2

.PHONY: setup
setup: $(STAMP) $(IDP_STAMP) system-deps ## Create .venv, install the project, the test provider and system packages

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check), mypy --strict, import-linter layers
	$(BIN)/ruff check gateway tests bench demo
	$(BIN)/ruff format --check gateway tests bench demo
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: test
test: setup lint ## Lint, then every test tier, then the deployment checks
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
	bash .ci/deploy-check

.PHONY: unit
unit: $(STAMP) ## Only the fast unit tests
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

.PHONY: fuzz
fuzz: $(STAMP) ## Long property run (20000 examples each) of the parser, config and routing fuzzers
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/security -k 'fuzz or properties' --timeout=1800 \
		-p no:randomly --hypothesis-show-statistics $(PYTEST_ARGS)

.PHONY: run
run: setup ## Start the demo: test provider, demo upstream and the gateway on http://127.0.0.1:8080
	$(BIN)/python -m demo

.PHONY: bench
bench: setup ## Side-by-side load benchmark (nginx, naive aiohttp, Apache peers, tokengate), ~10 min
	@bash .ci/system-deps wrk nginx redis-server apache2 mod_auth_openidc mod_oauth2
	$(BIN)/python -m bench.run $(BENCH_ARGS)

.PHONY: bench-profile
bench-profile: setup ## py-spy profile of tokengate's bearer-JWT route and the naive proxy under wrk load
	@bash .ci/system-deps wrk nginx
	@test -x $(BIN)/py-spy || $(BIN)/pip install -q py-spy
	$(BIN)/python -m bench.profile $(BENCH_ARGS)

.PHONY: deploy-check
deploy-check: ## hadolint, helm lint/template, kubernetes-validate and checkov on the chart
	bash .ci/deploy-check

.PHONY: image-check
image-check: ## Build the container image with buildah and run check-config inside it
	bash .ci/image-check

.PHONY: docs
docs: $(STAMP) ## Regenerate docs/configuration.md from the config schema
	$(BIN)/python -m gateway.config.reference > docs/configuration.md

.PHONY: clean
clean: ## Remove the virtualenv, caches and test provider modules
	rm -rf $(VENV) .venv-tools .tmp tests/idp/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
