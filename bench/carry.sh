#!/bin/bash
# Copy a study's run folders into the repository (bench/carry/NAME), so that a session on a
# new machine resumes them instead of training them again (bench/carry/README.md):
#   bash bench/carry.sh OUT NAME
# Everything `train.py --resume`, the study and its final reports read is kept: config.yaml,
# summary.json, the events, checkpoints/latest.pt (final.pt of a finished run: the same bytes,
# one blob in git), a replay file, the cached final reports and the logs; best.pt and
# previous.pt are left out (nothing resumes from them). Run it while the runs are stopped
# (kill -STOP) or ended: a checkpoint is replaced whole (os.replace), so a copy never holds a
# half-written one either way.
set -euo pipefail
out=$(realpath -m "${1:?usage: bash bench/carry.sh OUT NAME}")
name=${2:?usage: bash bench/carry.sh OUT NAME}
[ -d "$out" ] || { echo "error: $out is not a folder" >&2; exit 2; }
case $name in */* | . | .. | "") echo "error: NAME must be one folder name, got '$name'" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
dest=${CARRY_ROOT:-bench/carry}/$name  # CARRY_ROOT: elsewhere (the tests)
rm -rf "$dest.new" && mkdir -p "$(dirname "$dest")"
cp -r "$out" "$dest.new"
find "$dest.new" \( -name best.pt -o -name previous.pt -o -name '*.tmp' \) -delete
rm -rf "$dest" && mv "$dest.new" "$dest"
du -sh "$dest"
