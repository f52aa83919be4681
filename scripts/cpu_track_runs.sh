#!/usr/bin/env bash
# PermaKey `cpu-track` runs at the `cpu` reproduce budget (360 steps), evaluated with the last
# weights on the 500 test frames, one run after another (issues 16 and 17).
#
#   bash scripts/cpu_track_runs.sh OUT NOISE VARIANT "GAME:K:SEED ..." [permakey train options...]
#   bash scripts/cpu_track_runs.sh OUT none pm1 "MsPacman:7:0 MsPacman:7:1" --model peak_match=1.0
#   bash scripts/cpu_track_runs.sh OUT both dir "MsPacman:7:0" --model lsp_directional=true
#
# NOISE none: trained on clean frames, evaluated on clean test frames (OUT/eval/GAME-VARIANT-sSEED.json;
# scripts/peak_gap.py reads these). NOISE both: trained with Noisy Atari bars "both", evaluated
# on the test frames with those bars and without (OUT/eval/GAME-VARIANT-sSEED-both.json and
# -clean.json; scripts/noisy_gap.py reads these).
#
# Datasets go to OUT/data (the `cpu` scale's: 5,000 / 500 / 500 frames, seed 0, actions held
# for 4 steps), runs to OUT/runs/GAME/VARIANT-sSEED; a finished evaluation is skipped and an
# interrupted run resumed, so two of these can share OUT.
set -euo pipefail
OUT=$1 NOISE=$2 VARIANT=$3 JOBS=$4
shift 4
case $NOISE in
  none) EVALS="none:" ;;
  both) EVALS="both:-both none:-clean" ;;
  *) echo "NOISE must be none or both, got '$NOISE'" >&2; exit 2 ;;
esac
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
  NAME=$GAME-$VARIANT-s$SEED
  RUN=$OUT/runs/$GAME/$VARIANT-s$SEED
  LAST=${EVALS##* }
  [ -f "$OUT/eval/$NAME${LAST#*:}.json" ] && continue
  if [ -d "$RUN" ]; then
    permakey train permakey --resume "$RUN" --max-steps 360 --in-memory --workers 0
  else
    permakey train permakey --out "$RUN" --data "$DATA" --preset cpu-track --num-keypoints "$K" \
      --seed "$SEED" --noise "$NOISE" --epochs 100 --max-steps 360 --in-memory --workers 0 "$@"
  fi > "$OUT/logs/$NAME.log" 2>&1
  for evaluation in $EVALS; do
    EVAL=$OUT/eval/$NAME${evaluation#*:}.json
    [ -f "$EVAL" ] || permakey evaluate "$RUN" --data "$DATA" --noise "${evaluation%%:*}" \
      --out "$EVAL" --weights last > "$OUT/logs/eval-${EVAL##*/}.log" 2>&1
  done
done
