#!/usr/bin/env bash
# The main job on the embedded default: a CRO and a DSO on loopback with SQLite stores,
# keys generated on first run, a DSOPortfolioUpdate going out and its response coming back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/uftp-adapter demo --config-dir config
