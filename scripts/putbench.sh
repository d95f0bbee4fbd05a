#!/bin/sh
# putbench.sh: durable Put beside raw Pebble, side by side in one run.
#
#   go test -c -o /tmp/a.test .      # one binary per build to compare
#   scripts/putbench.sh REPS /tmp/a.test [/tmp/b.test ...]
#
# Each repetition runs, for 1 and then 64 writers, every binary's node
# benchmark and its raw-Pebble twin (BenchmarkPutDurable), alternating, so
# that each pair shares the load of the moment. It prints one line per
# benchmark run (binary, repetition, benchmark, puts/s, CPU µs per put) and
# the load average before each repetition. Override the lengths with
# N1 (default 2000) and N64 (default 20000).
set -eu
reps=$1
shift
n1=${N1:-2000}
n64=${N64:-20000}
for r in $(seq "$reps"); do
	echo "# rep $r load $(cut -d' ' -f1-3 /proc/loadavg)"
	for w in 1 64; do
		n=$n1
		[ "$w" = 64 ] && n=$n64
		for bin in "$@"; do
			for s in hearsay pebble; do
				"$bin" -test.run '^$' -test.bench "PutDurable/writers=$w\$/store=$s\$" -test.benchtime "${n}x" |
					awk -v bin="$(basename "$bin")" -v r="$r" '/^Benchmark/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "puts/s") p = $i; if ($(i+1) == "cpu-us/put") c = $i }; print bin, r, $1, p, c }'
			done
		done
	done
done
