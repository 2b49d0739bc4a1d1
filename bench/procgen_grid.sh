#!/bin/bash
# Issue 20's PPO grid to 1.2M frames (docs/procgen.md, "The grid at 1.2M frames"), resumable
# across sessions and machines. Run it from a frozen clone of the repository, so the runs
# train with the code they started with (docs/results.md, "What is left to run"):
#   bash bench/procgen_grid.sh OUT RECORD_REPO [ENVS]
# ENVS: 16 (default; 16 envs x 256 steps, 2 minibatches: the paper's minibatch and gradient
# steps per frame, the grid begun on 2026-12-06) or 64 (the paper's rollout: 64 envs x 256
# steps, 8 minibatches; its record is docs/procgen-study-e64.csv).
# OUT: the run folders; where it is missing, the runs carried in RECORD_REPO's
# bench/carry/<OUT's name> are copied there first, and resume. RECORD_REPO: the checkout
# whose record (docs/procgen-study.csv, or -e64.csv) takes each run as it ends (and which
# holds the carried runs, so the frozen clone can stay at its commit). Once all four have
# ended: their 1,000-episode final reports, into OUT-f1000.csv / .md (the record keeps the
# 200-episode ones).
set -euo pipefail
usage="usage: bash bench/procgen_grid.sh OUT RECORD_REPO [16|64]"
out=$(realpath -m "${1:?$usage}")
record=$(realpath -m "${2:?$usage}")
envs=${3:-16}
case $envs in
    16) rollout=(--num-envs 16 --train-args "--set num_steps=256 --set minibatches=2")
        csv=$record/docs/procgen-study.csv ;;
    64) rollout=(--num-envs 64)  # PPO's defaults: 256 steps, 8 minibatches
        csv=$record/docs/procgen-study-e64.csv ;;
    *) echo "error: ENVS must be 16 or 64, got '$envs'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
carried=$record/bench/carry/$(basename "$out")
if [ ! -d "$out" ]; then
    if [ -d "$carried" ]; then  # copied whole before it counts: a cut copy is made again
        mkdir -p "$(dirname "$out")"
        rm -rf "$out.part" && cp -a "$carried" "$out.part" && mv "$out.part" "$out"
        echo "resuming the runs carried in $carried from $out"
    else
        echo "no runs carried in $carried: the grid starts from step 0 in $out"
    fi
fi
grid=(--jobs 2 --frames 1200000 --seeds 0 1 --levels 10 200 --precision auto "${rollout[@]}"
      --out "$out")
.venv/bin/python bench/procgen_study.py "${grid[@]}" --csv "$csv"
.venv/bin/python bench/procgen_study.py "${grid[@]}" --final-episodes 1000 \
    --csv "$out-f1000.csv" --table "$out-f1000.md" --profiles "$out-f1000-profiles.png" \
    --curves "$out-f1000-curves.png"
