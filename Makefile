# clearhouse developer entry points. `make run` starts everything locally;
# `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PORT ?= 8000
# Operator ports, on 127.0.0.1: the API's /metrics (gunicorn master) and the relay's.
METRICS_PORT ?= 9807
RELAY_METRICS_PORT ?= 9806
# The services connect as the app role; `make migrate` (clearhouse db upgrade) connects as
# MIGRATION_DATABASE_URL, empty: DATABASE_URL's server and database as `postgres`, the
# superuser a local Postgres trusts; it creates both roles (README "Database roles").
DATABASE_URL ?= postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/clearhouse
MIGRATION_DATABASE_URL ?=
REDIS_URL ?= redis://127.0.0.1:6379/0
TEST_ARGS ?=
# pytest-xdist processes for make test (each has its own database, Redis prefix, ports and
# vhost); 2 cores: 2 processes took 11.5 min of pytest where one took 15 (CI, 1,603 tests).
# TEST_WORKERS=0 runs in this process (pdb, -x).
TEST_WORKERS ?= 2
# The broker of make test's RabbitMQ run (make test-rabbitmq).
RABBITMQ_TEST_URL ?= amqp://guest:guest@127.0.0.1:5672//
# First worker's metrics port; the Procfile adds 0/1/2 per worker node.
WORKER_METRICS_PORT ?= 9808
# The API serves HTTPS: `make run` makes development certificates here when missing
# (clearhouse dev-certs); `make run TLS_CLIENT_CA_FILE=var/tls/ca.pem` requires client ones.
TLS_DIR ?= var/tls
export PORT DATABASE_URL MIGRATION_DATABASE_URL REDIS_URL WORKER_METRICS_PORT METRICS_PORT
export RELAY_METRICS_PORT TLS_DIR

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# First interpreter >= 3.11 on PATH (override: make PYTHON=/path/to/python3.12 venv).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && \
	{ echo $$p; break; }; done)

# make locust: users, users started per second, duration (locust's -u, -r, -t).
LOCUST_USERS ?= 20
LOCUST_SPAWN_RATE ?= 5
LOCUST_RUN_TIME ?= 60s
# More locust options, e.g. LOCUST_ARGS='--html var/locust.html'.
LOCUST_ARGS ?=
export LOCUST_USERS LOCUST_SPAWN_RATE LOCUST_RUN_TIME

.PHONY: help venv services migrate run locust test test-rabbitmq alerts chromium chaos bench bench-report bench-reencrypt bench-purge mutation lint fmt proto clean

help:
	@echo "make venv      create .venv and install the package with dev extras, and the SDK"
	@echo "make services  make sure Postgres and Redis (and RabbitMQ when BROKER_URL=amqp://...)"
	@echo "               are up (starts local ones in var/)"
	@echo "make migrate   create the database and its roles, apply migrations, grant the app role"
	@echo "make run       run API (HTTPS), relay, workers, beat, Flower and a dev chain in the foreground (PORT=$(PORT))"
	@echo "make test      ruff + pytest of tests/ and sdk/python/tests (TEST_ARGS='-k foo -x');"
	@echo "               pytest includes the import contracts (tests/unit/test_architecture.py);"
	@echo "               and make alerts; then make test-rabbitmq"
	@echo "make test-rabbitmq  the broker-marked integration tests again, RabbitMQ as the broker"
	@echo "               (RABBITMQ_TEST_URL=$(RABBITMQ_TEST_URL); starts a local one if needed)"
	@echo "make alerts    promtool check + test of the alert rules (deploy/prometheus; installs"
	@echo "               Debian's prometheus package when promtool is missing)"
	@echo "make chromium  install Debian's chromium and chromium-driver when missing (the console's"
	@echo "               browser test drives them; make test runs this)"
	@echo "make chaos     full chaos run: every fault kind, seeded (CHAOS_SEED replays), ~10 min"
	@echo "make locust    locust headless against a running \`make run\` (LOCUST_USERS=$(LOCUST_USERS),"
	@echo "               LOCUST_SPAWN_RATE=$(LOCUST_SPAWN_RATE), LOCUST_RUN_TIME=$(LOCUST_RUN_TIME)); fails if a request failed"
	@echo "make bench     load benchmark (tests.load.bench); BENCH_BACKLOG_ECONOMY=N, BENCH_PRELOAD=N,"
	@echo "               BENCH_OVERLOAD=1 for issue 12's long modes (README: Performance)"
	@echo "make bench-report  daily report time for 100,000 intents (tests.load.report_bench)"
	@echo "make bench-reencrypt  card-key re-encryption rate over 100,000 intents (tests.load.reencrypt_bench)"
	@echo "make bench-purge  card-data purge rate over 1,000,000 intents (tests.load.purge_bench)"
	@echo "make mutation  mutation score of shared/domain (tests/unit) and shared/services/stages"
	@echo "               (MUTATION_PASSES='domain' for one pass; CPU heavy, runs at nice 15)"
	@echo "make lint      ruff check + ruff format --check + lint-imports (import contracts in"
	@echo "               pyproject.toml);  make fmt  to reformat"
	@echo "make proto     regenerate the committed gRPC stubs of shared/connectors/bankproto/bank.proto"
	@echo "make clean     remove runtime files in var/ (keeps .venv)"

venv: $(STAMP)

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: need Python >= 3.11 on PATH (or make PYTHON=/path/to/python3.x)" >&2; exit 1; fi
	@if [ ! -x $(BIN)/python ]; then \
		echo "creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; \
		exit 1; }; fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e sdk/python
	@touch $@

services:
	bash deploy/dev/services.sh

migrate: venv services
	$(BIN)/clearhouse db upgrade

# The local stack accepts webhook URLs on this machine or the LAN (a receiver on
# 127.0.0.1:9000): every process honcho starts inherits this. The setting's default,
# and so every deployment's, refuses private targets (SSRF).
run: export WEBHOOK_ALLOW_PRIVATE ?= true
run: venv services migrate
	@mkdir -p var
	@echo "----------------------------------------------------------------------"
	@echo " API          https://127.0.0.1:$(PORT)/ $(if $(TLS_CERT_FILE),(TLS_CERT_FILE=$(TLS_CERT_FILE)),(dev CA $(TLS_DIR)/ca.pem: curl --cacert $(TLS_DIR)/ca.pem; made when missing))"
	@echo " Client certs $(if $(TLS_CLIENT_CA_FILE),REQUIRED (signed by $(TLS_CLIENT_CA_FILE)): curl --cert $(TLS_DIR)/client.pem --key $(TLS_DIR)/client-key.pem,not required (make run TLS_CLIENT_CA_FILE=$(TLS_DIR)/ca.pem requires them))"
	@echo " Console      https://127.0.0.1:$(PORT)/console (operators: clearhouse operator create --email E --role admin)"
	@echo " API metrics  http://127.0.0.1:$(METRICS_PORT)/metrics (operator port; none on $(PORT))"
	@echo " Relay metrics http://127.0.0.1:$(RELAY_METRICS_PORT)/metrics"
	@echo " Worker metrics http://127.0.0.1:$(WORKER_METRICS_PORT)/metrics (pipeline), +1 instant, +2 background"
	@echo " Flower       http://127.0.0.1:5555/ $(if $(FLOWER_BASIC_AUTH),(basic auth: user $(firstword $(subst :, ,$(FLOWER_BASIC_AUTH)))),(no auth; its HTTP API needs FLOWER_BASIC_AUTH=user:password))"
	@echo " Postgres     $(DATABASE_URL) (the services' role; migrations as $(or $(MIGRATION_DATABASE_URL),the superuser postgres))"
	@echo " Redis        $(REDIS_URL)"
	@echo " Broker       $(or $(BROKER_URL),Redis (REDIS_URL); BROKER_URL=amqp://... for RabbitMQ)"
	@echo " Webhooks     private and loopback URLs $(if $(filter 1 true yes on,$(WEBHOOK_ALLOW_PRIVATE)),ALLOWED (WEBHOOK_ALLOW_PRIVATE=$(WEBHOOK_ALLOW_PRIVATE); deployments refuse them),refused (WEBHOOK_ALLOW_PRIVATE=$(WEBHOOK_ALLOW_PRIVATE)))"
	@echo "              for the CLI in another shell too: WEBHOOK_ALLOW_PRIVATE=true .venv/bin/clearhouse"
	@echo "              merchant create --name Shop --webhook-url http://127.0.0.1:9000/hook"
	@echo " Anchoring    $(if $(ANCHOR_RPC_URL),seals anchored at ANCHOR_RPC_URL=$(ANCHOR_RPC_URL),seals anchored on a dev chain (devchain: eth-tester in memory on 127.0.0.1:$(or $(DEVCHAIN_PORT),8545)); clearhouse ledger verify --anchors)"
	@echo " Processes    deploy/Procfile (api, worker_pipeline, worker_instant,"
	@echo "              worker_background, relay, beat, flower)$(if $(ANCHOR_RPC_URL),, and devchain); Ctrl-C stops them all"
	@echo " Load         make locust (in another shell)"
	@echo "----------------------------------------------------------------------"
	exec bash deploy/dev/run.sh

# Against the stack `make run` started (its PORT, over HTTPS with TLS_DIR's CA and client
# certificate): locust's summary, non-zero exit when any request failed. Credentials:
# CLEARHOUSE_CLIENT_ID/SECRET, else a new merchant (the CLI).
locust: venv
	bash deploy/dev/locust.sh https://127.0.0.1:$(PORT) $(LOCUST_ARGS)

test: venv services alerts chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests sdk/python/tests -p no:cacheprovider -n $(TEST_WORKERS) $(TEST_ARGS)
	$(MAKE) --no-print-directory test-rabbitmq

# The integration tests that exercise the broker (marker `broker`: the pipeline, priority
# isolation, redelivery and reconnects, the relay, queue depth, /ready) once more with
# RabbitMQ as the broker; each pytest process in a vhost of its own (tests/support/rabbitmq.py).
# services.sh starts a local RabbitMQ when none answers there.
test-rabbitmq: venv
	BROKER_URL='$(RABBITMQ_TEST_URL)' bash deploy/dev/services.sh
	BROKER_URL='$(RABBITMQ_TEST_URL)' $(BIN)/python -m pytest tests/integration -m broker \
		-p no:cacheprovider $(TEST_ARGS)

# The Prometheus alert rules: promtool check + promtool's rule tests.
alerts:
	bash deploy/dev/alerts.sh

# Debian's chromium and chromium-driver for tests/e2e/test_console_browser.py.
chromium:
	bash deploy/dev/chromium.sh

# Private Postgres and Redis of its own; needs the Postgres server binaries.
chaos: venv services
	$(BIN)/python -m tests.chaos

bench: venv services
	$(BIN)/python -m tests.load.bench

bench-report: venv services
	$(BIN)/python -m tests.load.report_bench

bench-reencrypt: venv services
	$(BIN)/python -m tests.load.reencrypt_bench

bench-purge: venv services
	$(BIN)/python -m tests.load.purge_bench

# Not part of `make test`: mutmut, one pass per package, each from scratch
# (deploy/dev/mutation.py says what each pass runs). The last line is JSON.
MUTATION_PASSES ?=
mutation: venv services
	nice -n 15 $(BIN)/python deploy/dev/mutation.py $(MUTATION_PASSES)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The bank protocol's stubs are generated once and committed: the running services need
# only grpcio and protobuf, not the compiler (grpcio-tools, a dev extra), and a review sees
# what changed. Run from the root, so the stubs import each other as a package.
proto: venv
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. \
		shared/connectors/bankproto/bank.proto

# Runtime files only. Local Postgres/Redis data (var/postgres, var/redis) stays:
# they may still be running. Stop them first, then `rm -rf var` to reset fully.
clean:
	rm -rf var/celerybeat-schedule* var/run/*.pid bench-results*.json
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .import_linter_cache
