#!/usr/bin/env bash
# Issue 20: the Procgen generalization protocol with PPO on a GPU machine, as far as time allows.
#
#   bash bench/procgen_gpu.sh --dry-run                  # print the commands, run nothing
#   bash bench/procgen_gpu.sh                            # coinrun starpilot bigfish, seed 0
#   bash bench/procgen_gpu.sh --all --seeds "0 1 2"      # all 16 games, three seeds
#   bash bench/procgen_gpu.sh --games "coinrun" --time-per-run 20m --env-threads 8
#   bash bench/procgen_gpu.sh --report-only              # only the reports of what exists
#   bash bench/procgen_gpu.sh --smoke --out /tmp/pg      # this script's plumbing on a CPU
#
# Run from anywhere after the README's install (make test) on a machine whose .venv holds a CUDA
# build of torch (the README pins the CPU build: install the CUDA one for the machine's driver).
# The protocol (Cobbe et al. 2020, openai/train-procgen): PPO, easy mode, 200 training levels
# from level 0, 25M frames, 64 envs x 256 steps (agents/ppo.py's defaults: 8 minibatches,
# 3 epochs), here with --device cuda --precision bf16. Each (game, seed) trains into its own
# folder OUT/ppo-GAME-sSEED under `timeout`: at the limit train.py gets SIGTERM, saves a
# checkpoint and exits, and the next call of this script resumes it (train.py --resume), so
# the protocol runs as far as the time allows and continues where it stopped. Every
# evaluation line (every --eval-every frames; the train vs held-out report whenever it passes a
# multiple of train.py's --gen-every, 25k, so every one at the default 1M) is printed with the
# frames/s since the previous one (evaluation time included; TensorBoard's
# speed/env_steps_per_s has the loop's own rate). Then, per run, the generalization report:
# evaluate.py RUN --episodes 100 --json RUN/generalization-100.json (final.pt if the run
# finished, else latest.pt), and a table of all of them. --smoke checks the plumbing (time
# limit, resume, reports, table) on a CPU with tiny runs: 4 envs x 16 steps, 2 minibatches,
# 2048 frames, 2 episodes per report, --precision auto (bf16 only where the CPU has native
# kernels: on an AVX2-only CPU bf16 made the smoke run take minutes); not the protocol, and its
# numbers mean nothing.
set -u
cd "$(dirname "$0")/.."

ALL_GAMES="bigfish bossfight caveflyer chaser climber coinrun dodgeball fruitbot heist jumper leaper maze miner ninja plunder starpilot"
GAMES="coinrun starpilot bigfish"
SEEDS="0"
OUT=runs/procgen-gpu
FRAMES=25000000
LIMIT=60m            # per run and per call of this script; timeout(1) syntax: 90s, 45m, 2h
EVAL_EVERY=1000000   # frames between the in-training reports
EVAL_EPISODES=10     # episodes per in-training report, on training and on held-out levels
REPORT_EPISODES=100
DRY=0
TRAIN=1
DEVICE=cuda
PRECISION=bf16
SHAPE=(--num-envs 64)  # with agents/ppo.py's num_steps 256, minibatches 8, epochs 3
ENV_THREADS=4        # procgen's stepping threads: 64 envs 11.3k frames/s with 4, 8.4k with 1 on a busy 2-core CPU (docs/procgen.md)
P=.venv/bin/python

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --all) GAMES=$ALL_GAMES ;;
    --games) GAMES=$2; shift ;;
    --seeds) SEEDS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --frames) FRAMES=$2; shift ;;
    --time-per-run) LIMIT=$2; shift ;;
    --eval-every) EVAL_EVERY=$2; shift ;;
    --eval-episodes) EVAL_EPISODES=$2; shift ;;
    --report-episodes) REPORT_EPISODES=$2; shift ;;
    --report-only) TRAIN=0 ;;
    --env-threads) ENV_THREADS=$2; shift ;;
    --smoke) DEVICE=cpu; PRECISION=auto; FRAMES=2048; EVAL_EVERY=1024; EVAL_EPISODES=2; REPORT_EPISODES=2
             SHAPE=(--num-envs 4 --set num_steps=16 --set minibatches=2) ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for game in $GAMES; do
  case " $ALL_GAMES " in *" $game "*) ;; *) echo "unknown Procgen game: $game" >&2; exit 2 ;; esac
done

# Prints a command (shell-quoted); runs it unless --dry-run.
run() {
  printf '$'; printf ' %q' "$@"; printf '\n'
  [ "$DRY" = 1 ] || "$@"
}

# Appends the frames/s since the previous evaluation line to train.py's "step N: eval ... Ts".
RATE_AWK='/^step [0-9]+: eval/ {
  step = $2 + 0; t = $NF; sub(/s$/, "", t); t += 0
  if (seen && t > pt) printf "%s  [%.0f frames/s since the previous evaluation]\n", $0, (step - ps) / (t - pt)
  else if (t > 0) printf "%s  [%.0f frames/s, run average]\n", $0, step / t
  else print
  ps = step; pt = t; seen = 1; fflush(); next }
{ print; fflush() }'

if [ "$DRY" = 0 ]; then
  [ -x "$P" ] || { echo "no $P: run the README's install (make test) first" >&2; exit 2; }
  [ "$DEVICE" = cpu ] || "$P" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
    echo "torch sees no CUDA device: the README's install pins torch's CPU build; install its" \
         "CUDA build for this machine into .venv" >&2; exit 2; }
  "$P" -c "import procgen" || { echo "procgen is not installed (the README's install, Python 3.11)" >&2; exit 2; }
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
fi
echo "games: $GAMES; seeds: $SEEDS; $FRAMES frames each; at most $LIMIT per run; into $OUT"

failed=""
if [ "$TRAIN" = 1 ]; then
  for seed in $SEEDS; do
    for game in $GAMES; do
      dir=$OUT/ppo-$game-s$seed
      echo; echo "=== $game seed $seed ($dir) $(date '+%F %T')"
      if [ -f "$dir/config.yaml" ]; then  # started before: continue it (or say it finished)
        cmd=("$P" train.py --resume "$dir" --total-steps "$FRAMES" --device "$DEVICE" --progress off)
      else
        cmd=("$P" train.py --agent ppo --env "procgen:$game" --distribution-mode easy
             --train-levels 200 --start-level 0 "${SHAPE[@]}" --env-threads "$ENV_THREADS"
             --total-steps "$FRAMES"
             --device "$DEVICE" --precision "$PRECISION" --seed "$seed" --eval-every "$EVAL_EVERY"
             --eval-episodes "$EVAL_EPISODES" --checkpoint-every 1000000 --progress off
             --run-dir "$dir")
      fi
      # SIGTERM at the limit: train.py saves and exits; if saving hangs, KILL after 5 minutes.
      cmd=(timeout --signal=TERM --kill-after=300 "$LIMIT" "${cmd[@]}")
      if [ "$DRY" = 1 ]; then
        run "${cmd[@]}"
        continue
      fi
      # awk ignores Ctrl-C so that train.py's last lines (checkpoint saved) still get through.
      run "${cmd[@]}" 2>&1 | (trap '' INT; exec awk "$RATE_AWK")
      code=${PIPESTATUS[0]}
      case $code in
        0) echo "--- $game seed $seed: finished" ;;
        124) echo "--- $game seed $seed: stopped at the time limit ($LIMIT) with a checkpoint;" \
                  "run this script again to continue it" ;;
        130) echo "--- interrupted (Ctrl-C): $game seed $seed saved a checkpoint; run this" \
                  "script again to continue"; exit 130 ;;
        *) echo "--- $game seed $seed: FAILED (exit $code)"; failed="$failed $game-s$seed" ;;
      esac
      if [ -f "$dir/summary.json" ]; then
        "$P" -c "import json, sys; s = json.load(open(sys.argv[1])); print(f\"    {s['env_steps']:,} frames in {s['wall_time_s']:.0f} s of training: {s['env_steps'] / max(s['wall_time_s'], 1e-9):.0f} frames/s overall (evaluations included)\")" "$dir/summary.json"
      fi
    done
  done
fi

echo; echo "=== generalization reports ($REPORT_EPISODES episodes on training and on held-out levels)"
for seed in $SEEDS; do
  for game in $GAMES; do
    dir=$OUT/ppo-$game-s$seed
    if [ "$DRY" = 0 ] && [ ! -f "$dir/checkpoints/final.pt" ] && [ ! -f "$dir/checkpoints/latest.pt" ]; then
      echo "$game seed $seed: no checkpoint yet, no report"; continue
    fi
    run "$P" evaluate.py "$dir" --episodes "$REPORT_EPISODES" --device "$DEVICE" \
      --json "$dir/generalization-$REPORT_EPISODES.json" || failed="$failed report:$game-s$seed"
  done
done

if [ "$DRY" = 0 ]; then
  echo; echo "=== table (the checkpoint each report used: final.pt if finished, else latest.pt)"
  "$P" - "$OUT" "$REPORT_EPISODES" $SEEDS -- $GAMES <<'EOF'
import json, sys
from pathlib import Path
out, episodes, rest = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
seeds, games = rest[: rest.index("--")], rest[rest.index("--") + 1 :]
print(f"{'game':10s} {'seed':>4s} {'frames':>11s} {'train ret':>9s} {'test ret':>9s} "
      f"{'train norm':>10s} {'test norm':>9s} {'gap':>6s}")
for seed in seeds:
    for game in games:
        run = out / f"ppo-{game}-s{seed}"
        report = run / f"generalization-{episodes}.json"
        if not report.is_file():
            print(f"{game:10s} {seed:>4s}  (no report)")
            continue
        r = json.loads(report.read_text())  # env_steps: the checkpoint's
        print(f"{game:10s} {seed:>4s} {r['env_steps']:11,d} {r['train_return_mean']:9.2f} "
              f"{r['test_return_mean']:9.2f} {r['train_normalized']:10.3f} "
              f"{r['test_normalized']:9.3f} {r['gap']:6.3f}")
EOF
fi
if [ -n "$failed" ]; then echo "failed:$failed" >&2; exit 1; fi
