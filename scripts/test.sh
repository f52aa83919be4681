#!/usr/bin/env bash
# Lint, format check, the layering contract (pyproject's [tool.importlinter]) and the whole
# test suite (CPU only). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
