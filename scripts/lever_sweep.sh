#!/usr/bin/env bash
# Issue 8's levers over several seeds at a fixed step budget: the `cpu` preset and one change
# each, trained in float32 on the datasets of `permakey reproduce --scale cpu` (DATA is that
# command's OUT/data folder), evaluated together per game and seed at the end of the budget.
#
#   bash scripts/lever_sweep.sh DATA OUT
#
# Writes OUT/runs/GAME/VARIANT-sSEED and OUT/eval-GAME-sSEED.{json,txt} (the tables of
# `permakey evaluate`). Settings through the environment: STEPS (700), DEVICE (auto), JOBS
# (runs at a time, 1), SEEDS ("0 1"), GAMES ("SpaceInvaders:25 Frostbite:20"), VARIANTS
# (default: base pnwide pnwide2 s2 upd8 sig07; levers joined by "+" combine, e.g. s2+coords),
# MINUTES (a wall-time cap per run on top of STEPS; none by default), PYTHON (.venv/bin/python).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DATA OUT" >&2; exit 2; }
export DATA=$1 OUT=$2 STEPS=${STEPS:-700} DEVICE=${DEVICE:-auto} MINUTES=${MINUTES:-}
export PYTHON=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1"}
GAMES=${GAMES:-"SpaceInvaders:25 Frostbite:20"}
VARIANTS=${VARIANTS:-"base pnwide pnwide2 s2 upd8 sig07"}

lever() {  # the options of one lever
  case $1 in
    base) ;;                                                              # the preset
    pnwide) echo "--model pointnet_channels=[32,64,64,128]" ;;           # the paper's widths
    pnwide2) echo "--model pointnet_channels=[64,128,128,256]" ;;        # twice those
    s2) echo "--model encoder_strides=[2,1,2,1] --model pointnet_strides=[1,2,2,1] --model pointnet_kernels=[4,3,3,3]" ;;
    upd8) echo "--pointnet-updates 8" ;;
    sig07) echo "--model gaussian_sigma=0.07" ;;
    coords) echo "--model pointnet_coords=true" ;;                        # CoordConv PointNet
    border) echo "--model window_border_cost=true" ;;                     # no cheap parking on the border
    *) echo "unknown lever $1" >&2; return 1 ;;
  esac
}

train() {  # GAME K VARIANT SEED
  local options="" part one
  for part in ${3//+/ }; do one=$(lever "$part") || return 1; options="$options $one"; done
  if [ -n "$MINUTES" ]; then options="$options --time-budget $MINUTES"; fi
  local run=$OUT/runs/$1/$3-s$4
  [ -f "$run/run.json" ] && grep -q '"status": "stopped"' "$run/run.json" && return 0
  # shellcheck disable=SC2086  # options are separate words
  "$PYTHON" -m permakey train permakey --data "$DATA/$1-seed0-5000-500-500-random-hold-4" \
    --preset cpu --num-keypoints "$2" --seed "$4" $options --max-steps "$STEPS" --in-memory \
    --workers 0 --device "$DEVICE" --precision fp32 --no-progress --out "$run" --overwrite \
    > "$OUT/runs/log-$1-$3-s$4.txt" 2>&1
}
export -f lever train

mkdir -p "$OUT/runs"
for game in $GAMES; do for variant in $VARIANTS; do for seed in $SEEDS; do
  echo "${game%%:*} ${game##*:} $variant $seed"
done; done; done | xargs -P "${JOBS:-1}" -L 1 bash -c 'train "$@"' _
for game in $GAMES; do
  game=${game%%:*}
  for seed in $SEEDS; do
    "$PYTHON" -m permakey evaluate "$OUT/runs/$game/"*-s"$seed" \
      --data "$DATA/$game-seed0-5000-500-500-random-hold-4" --weights last --device "$DEVICE" \
      --out "$OUT/eval-$game-s$seed.json" > "$OUT/eval-$game-s$seed.txt"
  done
done
