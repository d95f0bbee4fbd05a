#!/bin/sh
# compose-restart-check.sh: with compose.yaml's three agents up, restart one
# of them (docker-compose restart SERVICE, default n1) and measure how long
# until every agent lists all three alive and a write on the restarted node
# is read on another and one on another is read on it. Fails after 10 s.
#
#   make docker && docker-compose up -d && scripts/compose-restart-check.sh n1
#
# HEARSAY (default: go run ./cmd/hearsay) is the CLI used as the client;
# COMPOSE (default: docker-compose) may add -p PROJECT.
set -eu
svc=${1:-n1}
hs=${HEARSAY:-go run ./cmd/hearsay}
compose=${COMPOSE:-docker-compose}
bound=${BOUND:-10}
port() { case $1 in n1) echo 17947 ;; n2) echo 17948 ;; n3) echo 17949 ;; esac; }
other=n2
[ "$svc" = n2 ] && other=n1
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

healed() {
	for n in n1 n2 n3; do
		[ "$($hs --addr 127.0.0.1:$(port $n) --timeout 1s members 2>/dev/null | grep -c ' alive ')" = 3 ] || return 1
	done
}

$compose restart "$svc" >/dev/null 2>&1 &
start=$(now)
wait
echo "docker-compose restart $svc returned after $(elapsed "$start") s"
until healed; do
	if [ "$(echo "$(elapsed "$start") > $bound" | bc)" = 1 ]; then echo "FAIL: not all alive within ${bound}s"; exit 1; fi
	sleep 0.1
done
echo "all three alive everywhere after $(elapsed "$start") s"
tag=$(date +%s%N)
for pair in "$svc $other" "$other $svc"; do
	set -- $pair
	until $hs --addr 127.0.0.1:$(port $1) --timeout 1s put "check/$tag/$1" "$tag" >/dev/null 2>&1; do
		if [ "$(echo "$(elapsed "$start") > $bound" | bc)" = 1 ]; then echo "FAIL: write on $1 refused"; exit 1; fi
		sleep 0.1
	done
	until [ "$($hs --addr 127.0.0.1:$(port $2) --timeout 1s get "check/$tag/$1" 2>/dev/null)" = "$tag" ]; do
		if [ "$(echo "$(elapsed "$start") > $bound" | bc)" = 1 ]; then echo "FAIL: write on $1 not read on $2"; exit 1; fi
		sleep 0.1
	done
	echo "write on $1 read on $2 after $(elapsed "$start") s"
done
echo "healed: $(elapsed "$start") s after the restart began (bound ${bound}s)"
