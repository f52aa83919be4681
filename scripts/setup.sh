#!/usr/bin/env bash
# Creates (or updates) the virtual environment .venv with permakey and every extra.
# Idempotent: a second run only checks that everything is installed.
#
# Which torch build: with an NVIDIA GPU (`nvidia-smi -L` lists one), PyPI's default build
# (CUDA on Linux); without one, the CPU build of the torch pinned in constraints-cpu.txt, so
# that no multi-gigabyte CUDA build is downloaded. The CPU build comes from wherever plain pip
# finds it (a local wheel or mirror), else from PyTorch's CPU wheel index, as PyTorch's install
# page does it (pip install torch --index-url https://download.pytorch.org/whl/cpu); on macOS
# PyPI's build is the CPU one. The script says what it picked and why.
#
#   PERMAKEY_TORCH=cpu|cuda|any   the CPU build, PyPI's default build, or whatever pip picks
#                                 within pyproject's range (default: cuda with a GPU, else cpu)
#   --dry-run (or PERMAKEY_SETUP_DRY_RUN=1)   print the commands instead of running them
#   PYTHON (default python3) creates the environment; PERMAKEY_VENV (default .venv) names it.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=${PERMAKEY_SETUP_DRY_RUN:-}
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        *) echo "setup: unknown argument $arg (usage: scripts/setup.sh [--dry-run])" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
VENV=${PERMAKEY_VENV:-.venv}
CPU_INDEX=https://download.pytorch.org/whl/cpu
PIN=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' constraints-cpu.txt)

say() { echo "setup: $*"; }
run() {
    if [ -n "$DRY" ]; then say "would run: $*"; else say "+ $*"; "$@"; fi
}

# --- which build ------------------------------------------------------------------------
gpu=""
if command -v nvidia-smi >/dev/null 2>&1; then
    gpu=$(nvidia-smi -L 2>/dev/null | grep -m1 '^GPU ' || true)
fi
choice=${PERMAKEY_TORCH:-}
case "$choice" in
    "") if [ -n "$gpu" ]; then choice=cuda; why="nvidia-smi lists $gpu"
        elif command -v nvidia-smi >/dev/null 2>&1; then choice=cpu; why="no NVIDIA GPU: nvidia-smi lists none"
        else choice=cpu; why="no NVIDIA GPU: nvidia-smi not found"; fi ;;
    cpu|cuda|any) why="PERMAKEY_TORCH=$choice" ;;
    *) echo "setup: PERMAKEY_TORCH=$choice: choose cpu, cuda or any" >&2; exit 2 ;;
esac
case "$choice" in
    cpu) say "torch: the CPU build of $PIN ($why); PERMAKEY_TORCH=cuda or any to change" ;;
    cuda) say "torch: PyPI's default build, CUDA on Linux ($why); PERMAKEY_TORCH=cpu to change" ;;
    any) say "torch: whatever pip picks within pyproject's range ($why)" ;;
esac

# --- the environment ----------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    run "$PY" -m venv "$VENV"
fi
# In a dry run without the environment, pip's answers come from the interpreter that would
# create it.
probe_python="$VENV/bin/python"
[ -x "$probe_python" ] || probe_python=$(command -v "$PY")
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

installed_torch() {
    [ -x "$VENV/bin/python" ] || return 0
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true
}

# Whether plain pip (its index, find-links and mirrors as configured) resolves the pin to a
# CPU build ("+cpu"): it reads the candidate's metadata, installs nothing.
plain_pip_has_cpu_build() {
    local report
    report=$(mktemp)
    if "$probe_python" -m pip install --dry-run --ignore-installed --no-deps --quiet \
        --disable-pip-version-check --report "$report" "torch==$PIN" >/dev/null 2>&1; then
        "$probe_python" - "$report" <<'EOF'
import json, sys
items = json.load(open(sys.argv[1])).get("install", [])
sys.exit(0 if any(i["metadata"]["version"].endswith("+cpu") for i in items) else 1)
EOF
        local status=$?
        rm -f "$report"
        return $status
    fi
    rm -f "$report"
    return 1
}

constraint=()
have=$(installed_torch)
case "$choice" in
    cpu)
        constraint=(-c constraints-cpu.txt)
        if [ "$(uname -s)" = Darwin ]; then
            say "macOS: PyPI's torch is the CPU build"
        elif [ "$have" = "$PIN+cpu" ]; then
            say "torch $have (the CPU build) is installed"
        elif plain_pip_has_cpu_build; then
            say "plain pip finds the CPU build of torch $PIN"
        else
            say "plain pip has no CPU build of torch $PIN: PyTorch's CPU wheel index"
            run "${pip[@]}" "torch==$PIN" --index-url "$CPU_INDEX"
        fi ;;
    cuda)
        if [[ "$have" == *+cpu ]]; then
            say "torch $have is a CPU build: replacing it"
            run "$VENV/bin/python" -m pip uninstall --yes --quiet torch
        fi ;;
esac
run "${pip[@]}" ${constraint[@]+"${constraint[@]}"} -e ".[all]"
