#!/usr/bin/env bash
# The whole test suite, with the quality gates, on a fresh machine: set-up included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check adapter tests bench fuzz
echo "== mypy"
.venv/bin/mypy adapter
# The benchmarks too: they run rarely, so a wrong attribute or type there shows late.
.venv/bin/mypy bench
# The protocol core, strict with lxml's stubs (from the test extras) in the check.
.venv/bin/mypy --strict adapter/uftp
# The PostgreSQL tests skip without a server unless this is set; set, a missing server fails.
export UFTP_TEST_POSTGRES_DSN=${UFTP_TEST_POSTGRES_DSN:-postgresql://postgres@127.0.0.1:5432/test}
# Likewise the bus tests: RabbitMQ (tests/bus) and NATS JetStream (tests/bus/test_nats.py).
export UFTP_TEST_AMQP_URL=${UFTP_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
export UFTP_TEST_NATS_URL=${UFTP_TEST_NATS_URL:-nats://127.0.0.1:4222}
echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
