#!/usr/bin/env bash
# The agent's HTTP API side by side with the trivial twin (`hearsay bench
# http-twin`) under the same load generator (`hearsay bench http`): one
# agent on a durable data directory, the twin, then REPS alternating rounds
# of PUT and GET against each (64 keep-alive clients, 100 B values by
# default). Prints each run and the median ratios agent/twin, with the load
# average. Compare two builds by running it with each binary.
#
#   scripts/http-bench.sh [binary] [reps] [duration]
#
# CLIENTS, VALUE and KEYS override the load's shape; AGENT=binary runs the
# agent from another build (one older than the load generator, say) while
# the binary given runs the load and the twin.
set -euo pipefail
bin=${1:-}
reps=${2:-3}
dur=${3:-10s}
clients=${CLIENTS:-64}
value=${VALUE:-100}
keys=${KEYS:-1000}
work=$(mktemp -d /tmp/hearsay-httpbench.XXXXXX)
if [[ -z $bin ]]; then
	bin=$work/hearsay
	(cd "$(dirname "$0")/.." && go build -tags noplot -o "$bin" ./cmd/hearsay)
fi
apid= tpid=
cleanup() {
	for p in $apid $tpid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
"${AGENT:-$bin}" agent --name bench --data-dir "$work/data" --bind 127.0.0.1:$port --http 127.0.0.1:$((port + 1)) \
	--log-level warn >"$work/agent.log" 2>&1 &
apid=$!
"$bin" bench http-twin --listen 127.0.0.1:$((port + 2)) >"$work/twin.log" 2>&1 &
tpid=$!
agent=http://127.0.0.1:$((port + 1)) twin=http://127.0.0.1:$((port + 2))
for u in "$agent/v1/health/ready" "$twin/v1/kv/x"; do
	for _ in $(seq 100); do
		code=$(curl -s -o /dev/null -w '%{http_code}' "$u" || true)
		[[ $code == 200 || $code == 404 ]] && break
		sleep 0.1
	done
done
run() { # target url pid op
	"$bin" --json bench http --url "$2" --pid "$3" --op "$4" --clients "$clients" --value-size "$value" \
		--keys "$keys" --duration "$dur" --warmup 2s
}
declare -A rps cpu
for r in $(seq "$reps"); do
	for op in put get; do
		for t in agent twin; do
			if [[ $t == agent ]]; then out=$(run $t "$agent" "$apid" "$op"); else out=$(run $t "$twin" "$tpid" "$op"); fi
			echo "round $r $t $op: $out"
			rps[$t.$op]+="$(jq -r .requests_per_second <<<"$out") "
			cpu[$t.$op]+="$(jq -r .server_cpu_us_per_request <<<"$out") "
		done
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for op in put get; do
	a=$(median <<<"${rps[agent.$op]}") t=$(median <<<"${rps[twin.$op]}")
	ac=$(median <<<"${cpu[agent.$op]}") tc=$(median <<<"${cpu[twin.$op]}")
	printf '%s: agent %.0f req/s (%.0f µs CPU/req), twin %.0f req/s (%.0f µs CPU/req): %.2fx\n' \
		"$op" "$a" "$ac" "$t" "$tc" "$(echo "$a / $t" | bc -l)"
done
