#!/usr/bin/env bash
# The whole test suite, with the quality gates, on a fresh machine: set-up included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check adapter tests bench
echo "== mypy"
.venv/bin/mypy adapter
echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
