#!/usr/bin/env bash
# Scale-out figures (docs/scaling.md): the relay load benchmark of
# scripts/bench-relay.sh on
#   1. one node on SQLite,
#   2. one node on PostgreSQL,
#   3. two nodes on PostgreSQL, every other pair's host on node 2,
# each mode printing throughput, p99 latency, CPU per envelope (relay nodes plus
# the PostgreSQL server) and offline enqueue/drain rates; the load average is
# printed beside every run (the machine may be shared).
#
#   scripts/bench-scale.sh                       # same knobs as bench-relay.sh
#   BENCH_SECS=3 BENCH_PAIRS=20 BENCH_OFFLINE=5000 scripts/bench-scale.sh
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql). A
# throwaway server is started in a temp dir on a free loopback port (as the
# postgres user when run as root) and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${AGENTROOM_PG_BIN:-$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)}
if [[ -z $bin || ! -x $bin/initdb ]]; then
    echo "bench-scale: PostgreSQL not found (apt-get install postgresql, or set AGENTROOM_PG_BIN)" >&2
    exit 1
fi
as_pg=()
dir=$(mktemp -d /tmp/agentroom-bench-pg.XXXXXX)
if [[ $(id -u) -eq 0 ]]; then
    as_pg=(runuser -u postgres --)
    chmod 0777 "$dir"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
stop() {
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
# Durable settings (fsync and synchronous_commit on), as a production server.
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
pg_pid=$(head -1 "$dir/data/postmaster.pid")
psql() { "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -X -q -d postgres -c "$1"; }

run() {
    printf '\n== %s (load average: %s)\n' "$1" "$(cut -d' ' -f1-3 /proc/loadavg)"
    shift
    env "$@" scripts/bench-relay.sh
    printf '   (load average after: %s)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}

run "1 node, SQLite"
psql "CREATE DATABASE one_node"
run "1 node, PostgreSQL" BENCH_DB="postgres://postgres@127.0.0.1:$port/one_node" BENCH_PG_PID="$pg_pid"
psql "CREATE DATABASE two_nodes"
run "2 nodes, PostgreSQL, half the pairs across nodes" \
    BENCH_DB="postgres://postgres@127.0.0.1:$port/two_nodes" BENCH_PG_PID="$pg_pid" BENCH_NODES=2
"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -X -d two_nodes -c \
    "SELECT pg_size_pretty(pg_total_relation_size('envelopes')) AS envelopes_total,
            pg_size_pretty(pg_indexes_size('envelopes')) AS envelopes_indexes,
            (SELECT count(*) FROM envelopes) AS rows_left"
