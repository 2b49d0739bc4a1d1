#!/bin/bash
# Issue 20's PPO grid to 1.2M frames (docs/procgen.md, "The grid at 1.2M frames"), resumable
# across sessions and machines. Run it from a frozen clone of the repository, so the runs
# train with the code they started with (docs/results.md, "What is left to run"):
#   bash bench/procgen_grid.sh OUT RECORD_REPO
# OUT: the run folders; where it is missing, the runs carried in RECORD_REPO's
# bench/carry/procgen-1200k are copied there first, and resume. RECORD_REPO: the checkout
# whose docs/procgen-study.csv records each run as it ends (and which holds the carried runs,
# so the frozen clone can stay at its commit). Once all four have ended: their 1,000-episode
# final reports, into OUT-f1000.csv / .md (the record keeps the 200-episode ones).
set -euo pipefail
out=$(realpath -m "${1:?usage: bash bench/procgen_grid.sh OUT RECORD_REPO}")
record=$(realpath -m "${2:?usage: bash bench/procgen_grid.sh OUT RECORD_REPO}")
cd "$(dirname "$0")/.."
carried=$record/bench/carry/procgen-1200k
if [ ! -d "$out" ]; then
    if [ -d "$carried" ]; then  # copied whole before it counts: a cut copy is made again
        mkdir -p "$(dirname "$out")"
        rm -rf "$out.part" && cp -a "$carried" "$out.part" && mv "$out.part" "$out"
        echo "resuming the runs carried in $carried from $out"
    else
        echo "no runs carried in $carried: the grid starts from step 0 in $out"
    fi
fi
grid=(--num-envs 16 --jobs 2 --frames 1200000 --seeds 0 1 --levels 10 200 --precision auto
      --train-args "--set num_steps=256 --set minibatches=2" --out "$out")
.venv/bin/python bench/procgen_study.py "${grid[@]}" --csv "$record/docs/procgen-study.csv"
.venv/bin/python bench/procgen_study.py "${grid[@]}" --final-episodes 1000 \
    --csv "$out-f1000.csv" --table "$out-f1000.md" --profiles "$out-f1000-profiles.png" \
    --curves "$out-f1000-curves.png"
