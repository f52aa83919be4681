#!/usr/bin/env bash
# Creates (or updates) the virtual environment .venv with permakey and every extra.
# Idempotent: a second run only checks that everything is installed.
# On a machine without a CUDA GPU it pins the CPU build of torch (constraints-cpu.txt);
# set PERMAKEY_TORCH=any to let pip choose torch within pyproject's range.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
constraint=()
if [ "${PERMAKEY_TORCH:-cpu}" = "cpu" ]; then
    constraint=(-c constraints-cpu.txt)
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${constraint[@]}" -e ".[all]"
