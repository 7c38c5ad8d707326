#!/usr/bin/env bash
# Client latency through the home's daemon vs directly, on loopback:
#   1. wall time of `agentroom send` with no daemon (own relay connection, lock held)
#   2. wall time of `agentroom send` through a running daemon (Unix socket)
#   3. `send --wait-reply` round trip through `serve --on-message cat` on the peer
#   4. SSE latency: `send` starts on one home -> the other daemon's `received` event
#
# Wall times come from bash's $EPOCHREALTIME (no `date` process per sample:
# forking one costs about a millisecond, which an earlier version counted).
# Figure 2 sends to a peer whose daemon runs no handler, so the peer's handler
# and its reply do not share the 2 cores with the next send; figure 3 is the
# round trip through the handler. A baseline line (`--version`, no I/O) shows
# what starting the process costs on this machine.
#
#   scripts/bench-client.sh                      # debug binary, 20 runs each
#   AGENTROOM_BIN=target/release/agentroom BENCH_N=50 scripts/bench-client.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${BENCH_N:-20}"
BIN="${AGENTROOM_BIN:-target/debug/agentroom}"
[[ -x $BIN ]] || cargo build --quiet
command -v python3 >/dev/null || { echo "bench-client: needs python3" >&2; exit 1; }

tmp=$(mktemp -d)
# Run an installed copy, as users do (`cargo install`, a package, an unpacked
# release all write the file anew). The file the linker just wrote starts
# about 0.15 ms slower here: its page cache is in small pieces, so starting
# the process takes more page faults (252 against 234 for `--version`).
mkdir "$tmp/bin"
install -m 0755 "$BIN" "$tmp/bin/agentroom"
BIN="$tmp/bin/agentroom"
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

# Microseconds since the epoch, read without a subshell: `t0=$(...)` would fork.
now_us() { now=${EPOCHREALTIME/[.,]/}; }
report() { # name, then nanosecond samples on stdin
    sort -n | awk -v name="$1" '{ a[NR] = $1 } END {
        printf "%-44s median %7.2f ms   p90 %7.2f ms   (n=%d)\n", name, a[int((NR+1)/2)]/1e6, a[int(NR*0.9+0.5)]/1e6, NR }'
}

# 1. direct: no daemon in B
for _ in $(seq "$N"); do
    now_us; t0=$now; "$BIN" --home "$B" send a hi >/dev/null; now_us; echo $(( (now - t0) * 1000 ))
done | report "send, direct (no daemon)"

for _ in $(seq "$N"); do
    now_us; t0=$now; "$BIN" --version >/dev/null; now_us; echo $(( (now - t0) * 1000 ))
done | report "baseline: agentroom --version"

wait_daemon() {
    for _ in $(seq 200); do "$BIN" --home "$1" --json status | grep -q '"running":true' && return; sleep 0.05; done
    echo "bench-client: the daemon of $1 did not start" >&2; exit 1
}
# Both homes run a daemon; A's has no handler yet.
"$BIN" --home "$A" daemon >/dev/null 2>&1 &
a_daemon=$!
pids+=("$a_daemon")
"$BIN" --home "$B" daemon >/dev/null 2>&1 &
pids+=($!)
wait_daemon "$A"
wait_daemon "$B"

for _ in $(seq "$N"); do
    now_us; t0=$now; "$BIN" --home "$B" status >/dev/null; now_us; echo $(( (now - t0) * 1000 ))
done | report "status, through the daemon"

# 2. through B's daemon (the peer's daemon stores, acks, runs nothing)
for _ in $(seq "$N"); do
    now_us; t0=$now; "$BIN" --home "$B" send a hi >/dev/null; now_us; echo $(( (now - t0) * 1000 ))
done | report "send, through the daemon"

# The host now answers everything with cat.
kill "$a_daemon"; wait "$a_daemon" 2>/dev/null || true
"$BIN" --home "$A" serve --on-message cat >/dev/null 2>&1 &
pids+=($!)
wait_daemon "$A"

# 3. round trip through serve --on-message cat
for i in $(seq "$N"); do
    now_us; t0=$now; "$BIN" --home "$B" send a "rt $i" --wait-reply --timeout 30s >/dev/null; now_us; echo $(( (now - t0) * 1000 ))
done | report "send --wait-reply via serve --on-message cat"

# 4. SSE: A's daemon (the in-process one of serve) announces `received`. A
# Python reader holds the event stream open and stamps each event as it
# arrives; the figure is from the start of `send` on B to that event on A.
sock="$A/agentroom.sock"
python3 - "$BIN" "$B" "$sock" "$N" <<'PY' | report "send start -> peer's SSE received event"
import socket, subprocess, sys, threading, time
bin_, home, sock, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen, cond, buf = {}, threading.Condition(), bytearray()
def follow():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"GET /v1/events HTTP/1.1\r\nhost: localhost\r\n\r\n")
    while True:
        data = s.recv(65536)
        if not data:
            return
        t = time.perf_counter()
        buf.extend(data)
        with cond:
            for i in range(n):
                if i not in seen and f'"text":"sse {i}"'.encode() in buf:
                    seen[i] = t
            cond.notify_all()
threading.Thread(target=follow, daemon=True).start()
time.sleep(0.3)
for i in range(n):
    t0 = time.perf_counter()
    subprocess.run([bin_, "--home", home, "send", "a", f"sse {i}"], stdout=subprocess.DEVNULL, check=True)
    with cond:
        if not cond.wait_for(lambda: i in seen, timeout=10):
            sys.exit(f"bench-client: no received event for message {i}")
    print(int((seen[i] - t0) * 1e9))
PY
