#!/bin/sh
# balance_ab.sh - issue 6's benchmark: sluice's latency with a route that
# balances over three upstreams against one with a single upstream, the
# same load (wrk, c=10, 1 KB), alternated ROUNDS times so drift hits both.
#
#   bench/balance_ab.sh [BUILD_DIR] [ROUNDS]
#
# Prints p50/p99 latency and rps per round and configuration.  Only
# 127.0.0.1; every process it starts is stopped by pid.
set -eu
B=${1:-build}
ROUNDS=${2:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
d=$(mktemp -d /tmp/sluice-balance-XXXXXX)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"; }
trap cleanup EXIT INT TERM

# not in $(...): a subshell would lose the pid, and the mock would outlive us
mock() {
	"$top/$B/mockllm" -l 127.0.0.1:0 --quiet > "$d/mock$1.out" &
	pids="$pids $!"
	i=0
	while ! grep -q listening "$d/mock$1.out" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 100 ] || exit 1; sleep 0.05
	done
}
mock 1; mock 2; mock 3
m1=$(sed -n 's/^listening on //p' "$d/mock1.out")
m2=$(sed -n 's/^listening on //p' "$d/mock2.out")
m3=$(sed -n 's/^listening on //p' "$d/mock3.out")
python3 -c "import json; print(json.dumps({'model':'gpt-4o-mini','messages':[{'role':'user','content':'x'*900}]}))" > "$d/body.json"

start() {	# name route-line port
	cat > "$d/$1.conf" <<CONF
listen 127.0.0.1:$3;
workers 2;
pid_file $d/$1.pid;
log $d/$1.log warn;
spool_dir $d/$1-spool;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
upstream a { url http://$m1; }
upstream b { url http://$m2; }
upstream c { url http://$m3; }
$2
CONF
	"$top/$B/sluiced" -c "$d/$1.conf"
	i=0
	while ! [ -s "$d/$1.pid" ]; do
		i=$((i + 1)); [ $i -lt 100 ] || exit 1; sleep 0.05
	done
	pids="$pids $(cat "$d/$1.pid")"
}
start one "route * a;" 18501
start three "route * balance a b c;" 18502
sleep 0.5
for r in $(seq 1 "$ROUNDS"); do
	for t in one:18501 three:18502; do
		n=${t%%:*}; p=${t#*:}
		wrk -t1 -c10 -d3s -s "$top/bench/post.lua" \
		    "http://127.0.0.1:$p/v1/chat/completions" -- "$d/body.json" |
		    sed -n "s/^JSON /round $r $n /p"
	done
done
