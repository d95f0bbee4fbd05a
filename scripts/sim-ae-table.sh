#!/usr/bin/env bash
# Regenerates the anti-entropy rows of docs/SIMULATION.md: anti-entropy alone
# in push, pull and push-pull, and rumor mongering backed by anti-entropy,
# at n = 1000 in the cycles model, 200 runs each, seed 1. For the tail of
# each epidemic (susceptible fraction p below 0.1) it also prints the mean
# of p_{i+1}/p_i (push: about 1/e) and p_{i+1}/p_i^2 (pull: about 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/hearsay
go build -o "$bin" ./cmd/hearsay
runs=${RUNS:-200}
row() {
  "$bin" sim --nodes 1000 --model cycles "$@" --runs "$runs" --seed 1 --json |
    python3 -c '
import json, sys
r = json.load(sys.stdin); s = r["scenario"]; n = s["nodes"]
lin, sq = [], []
for run in r["runs"]:
    p = [(n - c) / n for c in run.get("curve", [])]
    for a, b in zip(p, p[1:]):
        if 0 < a < 0.1:
            lin.append(b / a); sq.append(b / (a * a))
mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
name = s["mechanism"] + " " + s["direction"] + ("" if s["mechanism"] == "anti-entropy" else " (%s, k=%d)" % (s["interest"], s["k"]))
print("| %s | %.4f | %.2f | %.2f | %.2f | %.3f | %.2f |" % (name, r["residue"], r["traffic"], r["t_avg"], r["t_last"], mean(lin), mean(sq)))'
}
for d in push pull push-pull; do row --mechanism anti-entropy --direction "$d"; done
for k in 1 2; do row --mechanism rumor+anti-entropy --direction push --interest feedback-counter --k "$k"; done
