#!/bin/sh
# Reproduces the mixture-of-experts table of the README (issue #14).
#   TINYVAE: the tinyvae binary (default: target/release/tinyvae)
#   TASK:    the folder make_multimode_task.py wrote (default /tmp/moe_tasks/watch_multimode)
#   OUT:     where models and scores go (default /tmp/moe_runs)
# Every model: window 64, stride 32, --train-stride 4, --epochs 100, --latent 16 (the same
# for all, to keep the run under an hour on two shared cores). K in 2..4 is chosen per seed by
# the mixture's mean validation score (training stream only); the widened single VAE has
# hidden width 60 K for the K chosen most often. Then: python3 table.py $OUT $TASK
set -e
T=${TINYVAE:-target/release/tinyvae}
TASK=${TASK:-/tmp/moe_tasks/watch_multimode}
OUT=${OUT:-/tmp/moe_runs}
COMMON="--train-stride 4 --epochs 100 --latent 16 --quiet"
mkdir -p "$OUT"
run() { # name seed extra-args
  d="$OUT/$1_s$2"
  if [ ! -f "$d.scores.csv" ]; then
    nice "$T" train --data "$TASK/train.csv" --out "$d" --seed "$2" $COMMON $3 > "$d.train.log" 2>&1
    nice "$T" eval --model "$d" --data "$TASK/test.csv" --json > "$d.eval.json"
    nice "$T" score --model "$d" --data "$TASK/test.csv" --out "$d.scores.csv" 2>"$d.score.log"
  fi
}
for s in 0 1 2; do
  run single "$s" ""
  for k in 2 3 4; do run "moe$k" "$s" "--experts $k"; done
done
K=$(python3 "$(dirname "$0")/table.py" "$OUT" "$TASK" --chosen-k)
for s in 0 1 2; do run "wide$K" "$s" "--hidden $((60 * K))"; done
python3 "$(dirname "$0")/table.py" "$OUT" "$TASK"
