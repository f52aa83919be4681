#!/usr/bin/env bash
# Keypoint quality against training time: one PermaKey run, evaluated after 1, 2, 5 and 10
# minutes of training (each leg resumes the run for the rest of the time; resuming is exact).
#
#   [MINUTES="1 2 5 10"] bash scripts/curve.sh GAME PRESET OUT [extra `permakey train` options...]
#
# Collects GAME into OUT/data/GAME (5,000 / 500 / 500 frames, seed 0, actions held for 4
# steps: the `cpu` scale's data) unless it is there, trains OUT/GAME-PRESET with K from the
# paper's table, and writes OUT/GAME-PRESET/curve/evaluation_<minutes>min.json, then prints
# one line per point (`python scripts/curve_table.py` prints them again).
set -euo pipefail
game=$1 preset=$2 out=$3
shift 3
pk=${PERMAKEY:-.venv/bin/permakey}
py=${PYTHON:-.venv/bin/python}
keypoints=$($py -c "from permakey.experiments.definitions import KEYPOINTS; print(KEYPOINTS['$game'])")
data=$out/data/$game
run=$out/$game-$preset
if [ ! -f "$data/meta.json" ]; then
    $pk collect "$game" --out "$data" --frames 5000 --val-frames 500 --test-frames 500 \
        --seed 0 --policy random-hold:4
fi
mkdir -p "$run-curve"
done_min=0
for minutes in ${MINUTES:-1 2 5 10}; do
    leg=$(( minutes - done_min ))
    common=(--time-budget "$leg" --in-memory --workers 0 --no-progress)
    if [ "$done_min" -eq 0 ]; then
        $pk train permakey --data "$data" --out "$run" --overwrite --preset "$preset" \
            --num-keypoints "$keypoints" "${common[@]}" "$@"
    else
        $pk train permakey --resume "$run" "${common[@]}"
    fi
    $pk evaluate "$run" --data "$data" --weights last --out "$run-curve/evaluation_${minutes}min.json" > /dev/null
    done_min=$minutes
done
$py "$(dirname "$0")/curve_table.py" "$run-curve"
