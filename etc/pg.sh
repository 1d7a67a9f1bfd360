#!/bin/sh
# pg.sh - a private PostgreSQL for `make run`, kept under one directory.
#
#   etc/pg.sh start DIR   initdb once, start if not running, create the
#                         database sluice, print the conninfo on stdout
#   etc/pg.sh stop DIR    stop it (fast: connections are cut)
#
# PostgreSQL refuses to run as root, so as root the server runs as the
# 'postgres' system user (created by the postgresql package) and owns DIR.
# The TCP port is picked once, free at initdb time, and kept in DIR/port.
# Everything but the conninfo goes to stderr.
set -eu

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

usage() {
	echo "usage: $0 start|stop DIR" >&2
	exit 1
}

[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
data=$dir/data
sock=$dir/sock
log=$dir/postgresql.log

if [ "$(id -u)" = 0 ]; then
	as() { runuser -u postgres -- "$@"; }
else
	as() { "$@"; }
fi

conninfo() {	# DBNAME
	echo "host=127.0.0.1 port=$(cat "$dir/port") dbname=$1 user=postgres"
}

running() {
	[ -f "$data/PG_VERSION" ] && as "$PGBIN/pg_ctl" -D "$data" status \
	    >/dev/null 2>&1
}

case $cmd in
start)
	if [ ! -f "$data/PG_VERSION" ]; then
		port=$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		mkdir -p "$sock"
		if [ "$(id -u)" = 0 ]; then
			chown postgres:postgres "$dir" "$sock"
			chmod 0700 "$dir"
		fi
		as "$PGBIN/initdb" -D "$data" -U postgres --auth=trust \
		    -E UTF8 --locale=C >&2
		as sh -c "cat >> '$data/postgresql.conf'" <<-CONF
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = '$sock'
		CONF
		echo "$port" > "$dir/port"
	fi
	if ! running; then
		as "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 30 start >&2 ||
		    { tail -n 20 "$log" >&2; exit 1; }
	fi
	admin=$(conninfo postgres)
	if [ "$(psql -X -Atq -d "$admin" \
	    -c "SELECT 1 FROM pg_database WHERE datname = 'sluice'")" != 1 ]; then
		psql -X -q -d "$admin" -c 'CREATE DATABASE sluice' >&2
	fi
	conninfo sluice
	;;
stop)
	if running; then
		as "$PGBIN/pg_ctl" -D "$data" -w -m fast stop >&2
	fi
	;;
*)
	usage
	;;
esac
