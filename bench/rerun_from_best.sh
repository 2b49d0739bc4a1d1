#!/bin/bash
# Re-run the rest of a run from its best.pt once per precision, all from the same state, to
# tell a precision's effect from chance (docs/procgen.md, "Seed 1's collapse").
#   bash bench/rerun_from_best.sh RUN OUT PRECISION... [-- TRAIN_ARGS...]
# Each OUT/<precision> starts as RUN's config.yaml with RUN/checkpoints/best.pt as its
# latest.pt (best.pt holds the whole state of an on-policy run: weights, optimizer, reward
# statistics, counters, random streams), then `train.py --resume` trains it on to RUN's
# --total-steps with --precision <precision>; the environments restart their episodes there,
# the same for every precision. An OUT/<precision> that exists is resumed as it is, so the
# command continues where a session stopped it. The runs go one process each, in parallel.
set -euo pipefail
run=${1:?usage: bash bench/rerun_from_best.sh RUN OUT PRECISION... [-- TRAIN_ARGS...]}
out=${2:?usage: bash bench/rerun_from_best.sh RUN OUT PRECISION... [-- TRAIN_ARGS...]}
shift 2
precisions=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do precisions+=("$1"); shift; done
[ $# -gt 0 ] && shift
[ ${#precisions[@]} -gt 0 ] || { echo "error: name at least one precision" >&2; exit 2; }
best=$run/checkpoints/best.pt
[ -f "$best" ] && [ -f "$run/config.yaml" ] || {
    echo "error: $run has no checkpoints/best.pt and config.yaml" >&2; exit 2; }
cd "$(dirname "$0")/.."
pids=()
for precision in "${precisions[@]}"; do
    dir=$out/$precision
    if [ ! -d "$dir" ]; then  # made whole in .part first: a cut copy is made again
        rm -rf "$dir.part" && mkdir -p "$dir.part/checkpoints"
        cp "$run/config.yaml" "$dir.part/" && cp "$best" "$dir.part/checkpoints/latest.pt"
        mv "$dir.part" "$dir"
    fi
    .venv/bin/python train.py --resume "$dir" --precision "$precision" --progress off "$@" \
        >> "$dir.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
