#!/bin/bash
# Copy a study's run folders into the repository (bench/carry/NAME), so that a session on a
# new machine resumes them instead of training them again (bench/carry/README.md):
#   bash bench/carry.sh OUT NAME
# The folders are copied whole (cp -a: a seed group's previous.pt stays a link of its file;
# a finished run's final.pt and latest.pt hold the same bytes, one blob in git), but for the
# half-written *.tmp files of a save in progress.
# Run it while the runs are stopped (kill -STOP) or ended: a checkpoint is replaced whole
# (os.replace), so a copy never holds a half-written one either way.
set -euo pipefail
out=$(realpath -m "${1:?usage: bash bench/carry.sh OUT NAME}")
name=${2:?usage: bash bench/carry.sh OUT NAME}
[ -d "$out" ] || { echo "error: $out is not a folder" >&2; exit 2; }
case $name in */* | . | .. | "") echo "error: NAME must be one folder name, got '$name'" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
dest=${CARRY_ROOT:-bench/carry}/$name  # CARRY_ROOT: elsewhere (the tests)
rm -rf "$dest.new" && mkdir -p "$(dirname "$dest")"
cp -a "$out" "$dest.new"
find "$dest.new" -name '*.tmp' -delete
rm -rf "$dest" && mv "$dest.new" "$dest"
du -sh "$dest"
