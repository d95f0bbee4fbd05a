#!/usr/bin/env bash
# Regenerates the rumor-mongering table of docs/SIMULATION.md: every
# loss-of-interest variant for k = 1..5 at n = 1000, push, cycles model,
# 200 runs each, seed 1. Prints Markdown rows.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/hearsay
go build -o "$bin" ./cmd/hearsay
runs=${RUNS:-200}
for interest in feedback-counter feedback-coin blind-counter blind-coin; do
  for k in 1 2 3 4 5; do
    "$bin" sim --nodes 1000 --model cycles --mechanism rumor --interest "$interest" --k "$k" --runs "$runs" --seed 1 --json |
      python3 -c '
import json, math, sys
r = json.load(sys.stdin); s = r["scenario"]
k = s["k"]; fb = s["interest"].startswith("feedback"); coin = s["interest"].endswith("coin")
def solve(m):
    x = 0.0
    for _ in range(500): x = math.exp(-m * (1 - x))
    return x
analytic = "%.4f" % solve(k + 1) if (fb and coin) else "—"
print("| %s | %d | %.4f | %s | %.4f | %.2f | %.2f | %.2f |" % (s["interest"], k, r["residue"], analytic, math.exp(-r["traffic"]), r["traffic"], r["t_avg"], r["t_last"]))'
  done
done
