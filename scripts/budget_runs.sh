#!/usr/bin/env bash
# Runs of scripts/cpu_track_runs.sh (clean frames) continued to longer step budgets, each
# budget evaluated like the first (last weights, the 500 clean test frames) (issue 16).
#
#   bash scripts/budget_runs.sh OUT VARIANT "GAME:SEED ..." "STEPS:NAME ..."
#   bash scripts/budget_runs.sh OUT joint "Seaquest:0 Seaquest:1" "720:x2 1440:x4"
#
# Budgets in increasing order. For each job, OUT/runs/GAME/VARIANT-sSEED (left as it is) is
# copied to the last budget's folder, OUT/runs/GAME/VARIANTNAME-sSEED, and resumed there to
# each budget in turn; at each earlier budget a copy of it is kept as that budget's folder. Each budget's evaluation
# goes to OUT/eval/GAME-VARIANTNAME-sSEED.json (scripts/peak_gap.py reads these). A finished
# evaluation is skipped and an interrupted run resumed, so the script can be run again after a
# stop. The VAE and LSP networks train on too, so each budget has its own error-map peaks.
set -euo pipefail
OUT=$1 VARIANT=$2 JOBS=$3 BUDGETS=$4
mkdir -p "$OUT/eval" "$OUT/logs"
LASTNAME=${BUDGETS##*:}
for job in $JOBS; do
  IFS=: read -r GAME SEED <<< "$job"
  DATA=$OUT/data/$GAME-seed0-5000-500-500-random-hold-4
  SOURCE=$OUT/runs/$GAME/$VARIANT-s$SEED
  WORK=$OUT/runs/$GAME/$VARIANT$LASTNAME-s$SEED
  [ -f "$OUT/eval/$GAME-$VARIANT$LASTNAME-s$SEED.json" ] && continue
  [ -d "$SOURCE" ] || { echo "no run $SOURCE: run scripts/cpu_track_runs.sh first" >&2; exit 2; }
  [ -d "$WORK" ] || { rm -rf "$WORK.tmp" && cp -r "$SOURCE" "$WORK.tmp" && mv "$WORK.tmp" "$WORK"; }
  for budget in $BUDGETS; do
    STEPS=${budget%%:*} NAME=$GAME-$VARIANT${budget#*:}-s$SEED
    RUN=$OUT/runs/$GAME/$VARIANT${budget#*:}-s$SEED
    EVAL=$OUT/eval/$NAME.json
    [ -f "$EVAL" ] && continue
    if [ "$RUN" = "$WORK" ] || [ ! -d "$RUN" ]; then
      # A run already past the budget is refused (the log's last line says so).
      permakey train permakey --resume "$WORK" --max-steps "$STEPS" --in-memory --workers 0 \
        > "$OUT/logs/$NAME.log" 2>&1 || { tail -n 1 "$OUT/logs/$NAME.log" >&2; exit 2; }
      [ "$RUN" = "$WORK" ] || { rm -rf "$RUN.tmp" && cp -r "$WORK" "$RUN.tmp" && mv "$RUN.tmp" "$RUN"; }
    fi
    permakey evaluate "$RUN" --data "$DATA" --noise none --out "$EVAL" --weights last \
      > "$OUT/logs/eval-$NAME.log" 2>&1
  done
done
