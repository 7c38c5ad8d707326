#!/usr/bin/env bash
# Client latency through the home's daemon vs directly, on loopback:
#   1. wall time of `agentroom send` with no daemon (own relay connection, lock held)
#   2. wall time of `agentroom send` through a running daemon (Unix socket)
#   3. `send --wait-reply` round trip through `serve --on-message cat` on the peer
#   4. SSE latency: `send` returns -> the receiving daemon's `received` event
#
#   scripts/bench-client.sh                      # debug binary, 20 runs each
#   AGENTROOM_BIN=target/release/agentroom BENCH_N=50 scripts/bench-client.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${BENCH_N:-20}"
BIN="${AGENTROOM_BIN:-target/debug/agentroom}"
[[ -x $BIN ]] || cargo build --quiet
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
command -v curl >/dev/null || { echo "bench-client: needs curl" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

"$BIN" relay --json --port 0 --db "$tmp/relay.db" >"$tmp/relay.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 200); do grep -q listening "$tmp/relay.out" 2>/dev/null && break; sleep 0.05; done
url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$tmp/relay.out" | head -1)
A="$tmp/a" B="$tmp/b"
"$BIN" --home "$A" setup >/dev/null
"$BIN" --home "$B" setup >/dev/null
inv=$("$BIN" --home "$A" --json invite create --relay "$url" --label b | sed -n 's/.*"invite":"\([^"]*\)".*/\1/p')
"$BIN" --home "$B" invite accept "$inv" --label a >/dev/null

ms() { date +%s%N; }
report() { # name, then nanosecond samples on stdin
    sort -n | awk -v name="$1" '{ a[NR] = $1 } END {
        printf "%-44s median %7.2f ms   p90 %7.2f ms   (n=%d)\n", name, a[int((NR+1)/2)]/1e6, a[int(NR*0.9+0.5)]/1e6, NR }'
}

# 1. direct: no daemon in B
for _ in $(seq "$N"); do
    t0=$(ms); "$BIN" --home "$B" send a hi >/dev/null; echo $(( $(ms) - t0 ))
done | report "send, direct (no daemon)"

# The host answers everything with cat.
"$BIN" --home "$A" serve --on-message cat >/dev/null 2>&1 &
pids+=($!)
"$BIN" --home "$B" daemon >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 200); do "$BIN" --home "$B" --json status | grep -q '"running":true' && break; sleep 0.05; done

# 2. through B's daemon
for _ in $(seq "$N"); do
    t0=$(ms); "$BIN" --home "$B" send a hi >/dev/null; echo $(( $(ms) - t0 ))
done | report "send, through the daemon"

# 3. round trip through serve --on-message cat
for i in $(seq "$N"); do
    t0=$(ms); "$BIN" --home "$B" send a "rt $i" --wait-reply --timeout 30s >/dev/null; echo $(( $(ms) - t0 ))
done | report "send --wait-reply via serve --on-message cat"

# 4. SSE: A's daemon (the in-process one of serve) announces `received`
sock="$A/agentroom.sock"
for i in $(seq "$N"); do
    : >"$tmp/sse"
    curl -sN --unix-socket "$sock" http://localhost/v1/events >"$tmp/sse" &
    cpid=$!
    sleep 0.2
    "$BIN" --home "$B" send a "sse $i" >/dev/null
    t_sent=$(ms)
    for _ in $(seq 2000); do grep -q "\"text\":\"sse $i\"" "$tmp/sse" && break; sleep 0.001; done
    t_seen=$(ms)
    kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true
    echo $(( t_seen - t_sent ))
done | report "SSE received after send returned (upper bound)"
