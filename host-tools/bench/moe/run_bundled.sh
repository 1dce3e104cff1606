#!/bin/sh
# The single-mode check of issue #14: on the bundled set (one normal mode, pendulum), the
# mixture must not be worse than the single VAE by more than 0.001 ROC AUC (int8). Same
# settings as run_goals.sh; K = $K (default 4, the K chosen on the multi-mode task).
set -e
T=${TINYVAE:-target/release/tinyvae}
K=${K:-4}
OUT=${OUT:-/tmp/moe_bundled}
COMMON="--train-stride 4 --epochs 100 --latent 16 --quiet"
mkdir -p "$OUT"
for s in 0 1 2; do
  for m in single "moe$K"; do
    d="$OUT/${m}_s$s"
    extra=""; [ "$m" = single ] || extra="--experts $K"
    if [ ! -f "$d.eval.json" ]; then
      nice "$T" train --out "$d" --seed "$s" $COMMON $extra > "$d.train.log" 2>&1
      nice "$T" eval --model "$d" --json > "$d.eval.json"
    fi
  done
done
python3 - "$OUT" "$K" <<'PY'
import json, sys
out, k = sys.argv[1], sys.argv[2]
a = {m: [json.load(open(f"{out}/{m}_s{s}.eval.json"))["roc_auc_int8"] for s in (0, 1, 2)] for m in ("single", f"moe{k}")}
for m, v in a.items():
    print(m, ", ".join(f"{x:.4f}" for x in v), "mean %.4f" % (sum(v) / 3))
print("moe - single: %+.4f" % (sum(a[f"moe{k}"]) / 3 - sum(a["single"]) / 3))
PY
