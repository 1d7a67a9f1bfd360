#!/bin/sh
# make run: sluiced in the foreground on this machine, with a private
# PostgreSQL under ./run/ and, for every upstream whose provider key is not
# in the environment, the bundled mock upstream in its place.
set -eu
B=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
run="$top/run"
mkdir -p "$run"
cd "$top"

mock_pid=""
cleanup() {
	[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null || true
	if [ -x etc/pg.sh ] && [ -d "$run/pg" ]; then
		etc/pg.sh stop "$run/pg" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT INT TERM

"$B/mockllm" -l 127.0.0.1:0 --quiet > "$run/mockllm.out" &
mock_pid=$!
i=0
while ! grep -q '^listening on' "$run/mockllm.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "mockllm did not start" >&2; exit 1; }
	sleep 0.05
done
mock=$(sed -n 's/^listening on //p' "$run/mockllm.out")

database=""
if [ -x etc/pg.sh ]; then
	database=$(etc/pg.sh start "$run/pg")
fi

# Rewrite the example for this checkout: local paths, and the mock for
# every upstream without a key.
root=0; [ "$(id -u)" = 0 ] && root=1
awk -v run="$run" -v mock="http://$mock" -v db="$database" -v root="$root" '
function flush(   i, envset) {
	envset = (keyvar != "" && ENVIRON[keyvar] != "")
	for (i = 1; i <= n; i++) {
		line = blk[i]
		if (!envset && line ~ /^[ \t]*url[ \t]/) line = "\turl\t\t" mock ";"
		if (!envset && line ~ /^[ \t]*(api_key_env|api_key_file)[ \t]/) continue
		print line
	}
	n = 0; keyvar = ""; inblk = 0
}
/^upstream[ \t]/ { inblk = 1 }
inblk {
	blk[++n] = $0
	if ($1 == "api_key_env") { keyvar = $2; sub(/;$/, "", keyvar) }
	if ($0 ~ /^}/) flush()
	next
}
/^pid_file[ \t]/ { print "pid_file\t\t" run "/sluiced.pid;"; next }
/^spool_dir[ \t]/ { print "spool_dir\t\t" run "/spool;"; next }
/^database[ \t]/ { if (db != "") print "database\t\t\"" db "\";"; next }
/^workers[ \t]/ { print "workers\t\t\t2;"; next }
/^#user[ \t]/ { if (root) print "user\t\t\troot;\t# make run as root: on purpose"; else print; next }
{ print }
' etc/sluice.conf.example > "$run/sluice.conf"

"$B/sluiced" -t -c "$run/sluice.conf"
listen=$(sed -n 's/^listen[ \t]*\([^;]*\);.*/\1/p' "$run/sluice.conf" | head -n 1)
cat <<MSG

sluice is starting on http://$listen (upstreams without a key go to the mock at $mock).
Try:
  curl -s http://$listen/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
MSG
if [ -n "$database" ]; then
	cat <<MSG
Then see the usage row:
  psql "$database" -c 'SELECT ts_start, model, status, prompt_tokens, completion_tokens, cost_micro_usd FROM usage_events ORDER BY ts_start DESC LIMIT 5'
MSG
fi
echo "Stop with ^C."
echo
"$B/sluiced" -f -c "$run/sluice.conf"
