#!/bin/bash
# Issue 23's GPU bars in one run, for a lent GPU (an estimated 5-8 minutes on an H200; nothing else on it):
#   bash bench/throughput_gpu.sh OUT_DIR
# 1. the captured update (--cuda-graph): captured train.py runs, captured = eager where the
#    update draws no noise, updates/s eager / compiled / captured (bar: TD3 captured >= 900);
# 2. 16 seeds in one process, stacked, for TD3 and SAC (bar: >= 5,000 seed-updates/s each).
# Each part writes its JSON to OUT_DIR; a failing part does not stop the next.
set -u
OUT=${1:-.}
mkdir -p "$OUT"
PY=${PY:-python}
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv | tee "$OUT/gpu.txt"
$PY bench/cuda_check.py --part capture --out "$OUT/cuda-capture.json" 2>&1 | grep -v Warning
$PY bench/seeds_update_speed.py --agents td3 sac --seeds 16 --device cuda --rounds 3 \
    --json "$OUT/seeds-update-speed-cuda.json"
