#!/usr/bin/env bash
# Idle CPU of a three-agent loopback cluster after a burst of writes: the
# agents start, n0 takes PUTs of new keys from 64 clients for WRITE seconds
# (0: none; about 100,000 keys in 35 s on two cores), then the script
# waits SETTLE seconds and reads each agent's CPU time over WINDOW seconds.
# Compare two builds by running it with each binary, or with AGENT=binary
# to run the agents from another build than the load generator's.
#
#   scripts/idle-cpu.sh [binary] [write s] [window s]
set -euo pipefail
bin=${1:-}
write=${2:-35}
window=${3:-20}
settle=${SETTLE:-5}
work=$(mktemp -d /tmp/hearsay-idle.XXXXXX)
if [[ -z $bin ]]; then
	bin=$work/hearsay
	(cd "$(dirname "$0")/.." && go build -tags noplot -o "$bin" ./cmd/hearsay)
fi
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
for i in 0 1 2; do
	join=()
	((i > 0)) && join=(--join 127.0.0.1:$port)
	"${AGENT:-$bin}" agent --name n$i --data-dir "$work/n$i" --bind 127.0.0.1:$((port + 2 * i)) \
		--http 127.0.0.1:$((port + 2 * i + 1)) "${join[@]}" --log-level warn >"$work/log$i" 2>&1 &
	pids+=($!)
done
for i in 0 1 2; do
	for _ in $(seq 100); do
		curl -fs "http://127.0.0.1:$((port + 2 * i + 1))/v1/health/ready" >/dev/null 2>&1 && break
		sleep 0.1
	done
done
if ((write > 0)); then
	"$bin" bench http --url http://127.0.0.1:$((port + 1)) --op put --keys 0 --clients 64 \
		--duration "${write}s" --warmup 0s
fi
sleep "$settle"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c0=() c1=()
for p in "${pids[@]}"; do c0+=("$(ticks "$p")"); done
t0=$(date +%s.%N)
sleep "$window"
t1=$(date +%s.%N)
for p in "${pids[@]}"; do c1+=("$(ticks "$p")"); done
for i in 0 1 2; do
	echo "n$i: $(echo "scale=2; (${c1[$i]} - ${c0[$i]}) / ($t1 - $t0)" | bc)% of a core idle"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
