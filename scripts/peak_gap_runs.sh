#!/usr/bin/env bash
# Issue 16's runs: PermaKey `cpu-track` at the `cpu` reproduce budget (360 steps), evaluated
# with the last weights on the 500 clean test frames, one run after another.
#
#   bash scripts/peak_gap_runs.sh OUT VARIANT "GAME:K:SEED ..." [permakey train options...]
#   bash scripts/peak_gap_runs.sh OUT pm1 "MsPacman:7:0 MsPacman:7:1" --model peak_match=1.0
#   python scripts/peak_gap.py pm1=OUT/eval/MsPacman-pm1-s0.json,OUT/eval/MsPacman-pm1-s1.json
#
# Datasets go to OUT/data (the `cpu` scale's: 5,000 / 500 / 500 frames, seed 0, actions held
# for 4 steps), runs to OUT/runs/GAME/VARIANT-sSEED, evaluations to OUT/eval; a finished
# evaluation is skipped and an interrupted run resumed, so two of these can share OUT.
set -euo pipefail
OUT=$1 VARIANT=$2 JOBS=$3
shift 3
mkdir -p "$OUT/eval" "$OUT/logs"
for job in $JOBS; do
  IFS=: read -r GAME K SEED <<< "$job"
  DATA=$OUT/data/$GAME-seed0-5000-500-500-random-hold-4
  (
    flock 9
    [ -f "$DATA/.collected" ] || {
      permakey collect "$GAME" --out "$DATA" --frames 5000 --val-frames 500 --test-frames 500 \
        --seed 0 --policy random-hold:4 && touch "$DATA/.collected"
    }
  ) 9> "$OUT/collect.lock"
  RUN=$OUT/runs/$GAME/$VARIANT-s$SEED
  EVAL=$OUT/eval/$GAME-$VARIANT-s$SEED.json
  [ -f "$EVAL" ] && continue
  if [ -d "$RUN" ]; then
    permakey train permakey --resume "$RUN" --max-steps 360 --in-memory --workers 0
  else
    permakey train permakey --out "$RUN" --data "$DATA" --preset cpu-track --num-keypoints "$K" \
      --seed "$SEED" --noise none --epochs 100 --max-steps 360 --in-memory --workers 0 "$@"
  fi > "$OUT/logs/$GAME-$VARIANT-s$SEED.log" 2>&1
  permakey evaluate "$RUN" --data "$DATA" --noise none --out "$EVAL" --weights last \
    > "$OUT/logs/eval-$GAME-$VARIANT-s$SEED.log" 2>&1
done
