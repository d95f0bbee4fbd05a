#!/usr/bin/env bash
# Fills an agent's data directory, on a 64 MiB tmpfs (24 MiB taken by a
# ballast file), with 128 KiB values through the HTTP API until it answers
# 507, reports the slowest answer, then measures the agent's CPU while the
# disk stays full, over WINDOW seconds. Needs root (mount). The binary given
# (default: built from this tree) is run as it is: compare two builds by
# running the script on each.
#
#   scripts/diskfull-cpu.sh [compressible|incompressible] [min-free-disk] [window s] [binary]
#
# PERF=1 also records a CPU profile of the agent while full (perf record -g)
# and prints the top of perf report.
set -euo pipefail
kind=${1:-compressible}
minfree=${2:-off}
window=${3:-30}
bin=${4:-}
work=$(mktemp -d /tmp/hearsay-diskfull.XXXXXX)
if [[ -z $bin ]]; then
	bin=$work/hearsay
	(cd "$(dirname "$0")/.." && go build -o "$bin" ./cmd/hearsay)
fi
vol=$work/vol
mkdir -p "$vol"
mount -t tmpfs -o size=64m tmpfs "$vol"
pid=
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	umount -l "$vol" || true
	rm -rf "$work"
}
trap cleanup EXIT
head -c $((24 << 20)) /dev/zero >"$vol/ballast"
port=$((20000 + RANDOM % 20000))
"$bin" agent --name full --data-dir "$vol/data" --bind 127.0.0.1:$port --http 127.0.0.1:$((port + 1)) \
	--min-free-disk "$minfree" --log-level info >"$work/log" 2>&1 &
pid=$!
url=http://127.0.0.1:$((port + 1))
for _ in $(seq 100); do curl -fs "$url/v1/health/live" >/dev/null 2>&1 && break; sleep 0.1; done
val=$work/val
i=0
start=$(date +%s.%N)
while :; do
	if [[ $kind == compressible ]]; then
		{ yes "value $(printf %08d $i) " || true; } | head -c $((128 << 10)) >"$val"
	else
		head -c $((128 << 10)) /dev/urandom >"$val"
	fi
	t0=$(date +%s.%N)
	code=$(curl -s -o "$work/body" -w '%{http_code}' -X PUT --data-binary "@$val" --max-time 60 "$url/v1/kv/k$(printf %05d $i)")
	t1=$(date +%s.%N)
	d=$(echo "$t1 - $t0" | bc)
	if (($(echo "$d > ${slowest:-0}" | bc))); then slowest=$d; fi
	if [[ $code == 507 ]]; then
		echo "507 after $i acknowledged writes, in $d s (slowest write answered in $slowest s): $(cat "$work/body")"
		break
	fi
	[[ $code == 200 ]] || { echo "put $i: $code $(cat "$work/body")"; exit 1; }
	i=$((i + 1))
done
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
log0=$(wc -l <"$work/log")
c0=$(ticks)
t0=$(date +%s.%N)
if [[ ${PERF:-} == 1 ]]; then
	perf record -F 499 -g -p "$pid" -o "$work/perf.data" -- sleep "$window" 2>/dev/null
else
	sleep "$window"
fi
c1=$(ticks)
t1=$(date +%s.%N)
echo "while full ($kind, --min-free-disk $minfree): $(echo "scale=1; ($c1 - $c0) / ($t1 - $t0)" | bc)% of a core over $(echo "$t1 - $t0" | bc | cut -c1-5) s, $(($(wc -l <"$work/log") - log0)) log lines"
if [[ ${PERF:-} == 1 ]]; then
	perf report -i "$work/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -v "^#" | grep "%" | cut -c1-200 | head -${PERFTOP:-60}
fi
