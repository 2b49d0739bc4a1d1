#!/usr/bin/env bash
# Issue 19: each fault rechecked from the command line (docs/robustness.md); prints each command,
# the tail of its output and its exit code. Needs root for chattr (the read-only folder cases).
#   bash bench/faults_recheck.sh [SCRATCH_FOLDER]      # default /tmp/rc
cd "$(dirname "$0")/.."
P=.venv/bin/python
R=${1:-/tmp/rc}
rm -rf $R/runs; mkdir -p $R/runs
show() { echo; echo "### $1"; shift; echo "\$ $*"; "$@" > $R/out.txt 2>&1; code=$?; grep -v -E "WARNING: compiler|^$|settotalmass" $R/out.txt | tail -n 4; echo "(exit $code)"; }
TINY="--set learning_starts=100 --set batch_size=32 --set actor_hidden=[32,32] --set critic_hidden=[32,32] --eval-episodes 1 --progress off"

echo "## 1. kill -9 before the first checkpoint"
$P train.py --config configs/td3/pendulum.yaml --seed 0 --run-dir $R/runs/pend --progress off > /dev/null 2>&1 &
pid=$!; sleep 40; kill -9 $pid; wait $pid 2>/dev/null
echo "killed at 40 s; folder holds: $(ls $R/runs/pend | tr '\n' ' ') checkpoints/: $(ls $R/runs/pend/checkpoints 2>/dev/null | tr '\n' ' ')"
show "resume of the killed folder" $P train.py --resume $R/runs/pend --total-steps 1500 --progress off

echo "## 2. divergence"
show "lr 1e6" $P train.py --agent td3 --env Pendulum-v1 --total-steps 3000 $TINY --set actor_lr=1e6 --set critic_lr=1e6 --log-every 100 --checkpoint-every 500 --run-dir $R/runs/div
echo "checkpoints after divergence: $(ls $R/runs/div/checkpoints 2>/dev/null | tr '\n' ' ')"
show "tau=nan" $P train.py --agent td3 --env Pendulum-v1 $TINY --set tau=.nan --run-dir $R/runs/taunan

echo "## 3. utd and long inner loops"
show "--utd inf" $P train.py --agent td3 --env Pendulum-v1 $TINY --utd inf --run-dir $R/runs/utdinf
show "--utd nan" $P train.py --agent td3 --env Pendulum-v1 $TINY --utd nan --run-dir $R/runs/utdnan
$P train.py --agent td3 --env Pendulum-v1 $TINY --eval-episodes 1000000 --eval-every 200 --total-steps 400 --run-dir $R/runs/evals > $R/out.txt 2>&1 &
pid=$!; sleep 25; kill -INT $pid; t0=$(date +%s); wait $pid; code=$?; echo; echo "### --eval-episodes 1000000, Ctrl-C at 25 s: exit $code after $(( $(date +%s) - t0 )) s"; tail -n 2 $R/out.txt

echo "## 4. the README's first example (before: 0 updates, silent)"
show "warm-up covers the run" $P train.py --agent td3 --env Pendulum-v1 --seed 0 --total-steps 20000 --set actor_hidden=[32,32] --set critic_hidden=[32,32] --eval-every 20000 --eval-episodes 1 --progress off --run-dir $R/runs/readme

echo "## 5. a checkpoint for another env"
$P train.py --agent td3 --env Walker2d-v5 --total-steps 200 $TINY --run-dir $R/runs/walker > /dev/null 2>&1
show "Walker2d run on HalfCheetah" $P evaluate.py $R/runs/walker --env HalfCheetah-v5 --episodes 1

echo "## 6. bad values and paths"
for v in "--seed -1" "--seed 1180591620717411303424" "--set gamma=-5" "--set buffer_size=0" "--set critic_hidden=[-5]" "--set batch_size=-4" "--set batch_size=0"; do
  show "$v" $P train.py --agent td3 --env Pendulum-v1 $TINY $v --run-dir $R/runs/bad
  [ -e $R/runs/bad ] && echo "!! run folder written"
done
echo x > $R/afile
show "run-dir under a file" $P train.py --agent td3 --env Pendulum-v1 $TINY --run-dir $R/afile/run
mkdir -p $R/ro && chattr +i $R/ro
show "run-dir in a read-only (immutable) folder" $P train.py --agent td3 --env Pendulum-v1 $TINY --run-dir $R/ro/run
chattr -i $R/ro
$P train.py --agent td3 --env Pendulum-v1 $TINY --total-steps 4000 --checkpoint-every 500 --run-dir $R/runs/ro > $R/out.txt 2>&1 &
pid=$!; while [ ! -f $R/runs/ro/checkpoints/latest.pt ]; do sleep 0.2; done; chattr +i $R/runs/ro/checkpoints; wait $pid; code=$?
echo; echo "### folder made immutable mid-run (chattr +i checkpoints/): exit $code"; grep -v "^$" $R/out.txt | tail -n 1
chattr -i $R/runs/ro/checkpoints
echo "latest.pt after: $($P -c "import torch; c=torch.load('$R/runs/ro/checkpoints/latest.pt',weights_only=True); print('step', c['counters']['env_steps'])" 2>&1)"
show "evaluate --json into a folder" $P evaluate.py $R/runs/walker --json $R --episodes 1
echo "tmp files left: $(find $R -maxdepth 1 -name '*.tmp' | wc -l)"
$P -c "import torch; c=torch.load('$R/runs/walker/checkpoints/final.pt',weights_only=True); del c['agent_state']; torch.save(c,'$R/nokeys.pt')"
show ".pt missing keys" $P evaluate.py $R/nokeys.pt

echo "## 7. YAML alias bomb"
printf 'agent: td3\nagent_config:\n  critic_hidden: &a [1,1,1,1,1,1,1,1,1]\n  x: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n  y: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  z: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  w: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n  v: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n' > $R/bomb.yaml
show "bomb preset" $P train.py --config $R/bomb.yaml --run-dir $R/runs/bomb

echo "## 8. two Ctrl-C back to back"
$P train.py --agent td3 --env Hopper-v5 $TINY --total-steps 100000 --checkpoint-every 100000 --run-dir $R/runs/twice > $R/out.txt 2>&1 &
pid=$!; sleep 25; kill -INT $pid; kill -INT $pid; wait $pid; code=$?
echo; echo "### SIGINT twice: exit $code"; grep -v -E "^$|settotalmass|WARNING" $R/out.txt | tail -n 3
echo "files: $(ls $R/runs/twice/checkpoints | tr '\n' ' ')"
show "resume after it" $P train.py --resume $R/runs/twice --total-steps 3000 --progress off

echo "## 9. resuming a finished run"
before=$(find $R/runs/walker -type f -exec sha256sum {} + | sort | sha256sum)
show "resume finished" $P train.py --resume $R/runs/walker
after=$(find $R/runs/walker -type f -exec sha256sum {} + | sort | sha256sum)
[ "$before" = "$after" ] && echo "run folder unchanged (sha256 of every file)"

echo "## 11. corrupt checkpoint"
head -c 5000 $R/runs/walker/checkpoints/final.pt > $R/trunc.pt
show "truncated" $P evaluate.py $R/trunc.pt
