#!/usr/bin/env bash
# Keypoint quality against training time: one PermaKey run, evaluated after 1, 2, 5 and 10
# minutes of training (each leg resumes the run for the rest of the time; resuming is exact).
#
#   [MINUTES="1 2 5 10"] bash scripts/curve.sh GAME PRESET OUT [extra `permakey train` options...]
#
# Collects GAME into OUT/data/GAME as `permakey reproduce --scale cpu` does (its frame counts,
# data seed and policy, read from permakey.experiments.definitions) unless it is there, trains
# OUT/GAME-PRESET with K from the paper's table, writes OUT/GAME-PRESET-curve/
# evaluation_<minutes>min.json and prints the table (`python scripts/curve_table.py` again).
set -euo pipefail
game=$1 preset=$2 out=$3
shift 3
pk=${PERMAKEY:-.venv/bin/permakey}
py=${PYTHON:-.venv/bin/python}
read -r keypoints frames eval_frames seed policy < <($py -c "
from permakey.experiments.definitions import DATA_SEED, KEYPOINTS, POLICY, SCALES
cpu = SCALES['cpu']
print(KEYPOINTS['$game'], cpu.train_frames, cpu.eval_frames, DATA_SEED, POLICY)")
data=$out/data/$game
run=$out/$game-$preset
if [ ! -f "$data/meta.json" ]; then
    $pk collect "$game" --out "$data" --frames "$frames" --val-frames "$eval_frames" \
        --test-frames "$eval_frames" --seed "$seed" --policy "$policy"
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
