#!/usr/bin/env bash
# End-to-end smoke test with real processes: two homes on one machine.
#
#   host:  agentroom room open --detach --on-message echo.sh   (behind the fake cloudflared)
#   guest: agentroom invite accept '<invite>'
#   guest → host: the host's handler answers "echo: <text>"
#   host → guest: the guest's `serve` handler answers, the host receives it
#   room stop; then no process of this run may be left.
#
# Usage: scripts/smoke-e2e.sh
#   AGENTROOM_BIN   binary to test (default: `cargo build` and target/debug/agentroom)
#   SMOKE_TUNNEL    cloudflared (default: cloudflared/fake-cloudflared), none, or bore
#                   (bore needs a running server: SMOKE_BORE_SERVER, default bore.pub,
#                   and BORE_SECRET if it has one)
#   SMOKE_KEEP=1    keep the temporary directory for inspection
# Exits nonzero on the first failure, printing the room's log.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tunnel=${SMOKE_TUNNEL:-cloudflared}
if [ -z "${AGENTROOM_BIN:-}" ]; then
  (cd "$root" && cargo build --quiet)
  AGENTROOM_BIN="$root/target/debug/agentroom"
fi
bin=$AGENTROOM_BIN
[ -x "$bin" ] || { echo "smoke: $bin is not executable" >&2; exit 1; }
handler="$root/scripts/handlers/echo.sh"
export CLOUDFLARED_BIN="$root/cloudflared/fake-cloudflared"
unset AGENTROOM_HOME

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentroom-smoke.XXXXXX")
host="$tmp/host"
guest="$tmp/guest"
guest_serve_pid=""

log() { printf 'smoke: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  if [ -f "$host/room.log" ]; then
    log "--- last lines of $host/room.log"
    tail -n 40 "$host/room.log" >&2 || true
  fi
  exit 1
}
cleanup() {
  status=$?
  if [ -n "$guest_serve_pid" ] && kill -0 "$guest_serve_pid" 2>/dev/null; then
    kill "$guest_serve_pid" 2>/dev/null || true
    wait "$guest_serve_pid" 2>/dev/null || true
  fi
  "$bin" --home "$host" room stop >/dev/null 2>&1 || true
  if [ "${SMOKE_KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap cleanup EXIT

# One JSON field from the last line of stdin that has it.
field() {
  python3 -c 'import json,sys
key = sys.argv[1]
val = None
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        obj = json.loads(line)
        if key in obj:
            val = obj[key]
if val is None:
    sys.exit(1)
print(val)' "$1"
}

# Wait (up to $2 s) until the command in $1 succeeds.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

log "binary: $bin ($("$bin" version))"
log "1/6 host: room open --detach --tunnel $tunnel"
tunnel_args=(--tunnel "$tunnel")
[ "$tunnel" = bore ] && tunnel_args+=(--bore-server "${SMOKE_BORE_SERVER:-bore.pub}")
ready=$("$bin" --home "$host" --json room open --detach "${tunnel_args[@]}" \
  --on-message "$handler" --probe-timeout 20s) || fail "room open failed"
invite=$(printf '%s\n' "$ready" | field invite) || fail "no invite in: $ready"
relay=$(printf '%s\n' "$ready" | field relay) || fail "no relay in: $ready"
room_pid=$(printf '%s\n' "$ready" | field pid) || fail "no pid in: $ready"
tunnel_pgid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("tunnel_pgid") or "")' "$host/room.json")
log "    room pid $room_pid, relay $relay, tunnel group ${tunnel_pgid:-none}"
"$bin" --home "$host" room status >/dev/null || fail "room status says not running"

log "2/6 guest: invite accept"
"$bin" --home "$guest" setup >/dev/null || fail "guest setup"
accepted=$("$bin" --home "$guest" --json invite accept "$invite") || fail "invite accept"
host_pk=$(printf '%s\n' "$accepted" | field peer) || fail "no peer in: $accepted"
[ "$(printf '%s\n' "$accepted" | field relay)" = "$relay" ] || fail "guest stored another relay"
guest_pk=$("$bin" --home "$guest" --json whoami | field pk)

log "3/6 guest → host, answered by the host's handler"
"$bin" --home "$guest" send "$host_pk" "ping from the guest" >/dev/null || fail "guest send"
reply=$("$bin" --home "$guest" --json listen --once --timeout 60s) || fail "no reply from the host"
[ "$(printf '%s\n' "$reply" | field text)" = "echo: ping from the guest" ] ||
  fail "unexpected reply: $reply"

log "4/6 host → guest, answered by the guest's handler"
"$bin" --home "$guest" --json serve --on-message "$handler" --max-turns 1 \
  >"$tmp/guest-serve.out" 2>"$tmp/guest-serve.err" &
guest_serve_pid=$!
wait_for "grep -q '\"event\":\"connected\"' '$tmp/guest-serve.out'" 60 || fail "guest serve never connected"
"$bin" --home "$host" send "$guest_pk" "ping from the host" >/dev/null || fail "host send"
wait "$guest_serve_pid" || fail "guest serve failed: $(cat "$tmp/guest-serve.err")"
guest_serve_pid=""
grep -q '"text":"echo: ping from the host"' "$tmp/guest-serve.out" || fail "guest handler did not reply"
wait_for "grep -q '\"text\":\"echo: ping from the host\"' '$host/room.log'" 60 ||
  fail "the host never received the guest's reply"

log "5/6 room stop"
"$bin" --home "$host" room stop >/dev/null || fail "room stop"
wait_for "! kill -0 $room_pid 2>/dev/null || grep -q '^Z' <(awk '{print \$3}' /proc/$room_pid/stat 2>/dev/null)" 30 ||
  fail "room pid $room_pid still alive"
[ ! -e "$host/room.json" ] || fail "state file left behind"

log "6/6 no process left"
survivors() {
  local pid args state pgid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    state=$(awk '{print $3}' "$d/stat" 2>/dev/null) || continue
    [ "$state" = Z ] && continue
    pgid=$(awk '{print $5}' "$d/stat" 2>/dev/null) || continue
    args=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
    if { [ -n "$tunnel_pgid" ] && [ "$pgid" = "$tunnel_pgid" ]; } || [[ "$args" == *"$tmp"* ]]; then
      echo "$pid $args"
    fi
  done
}
none_left() { [ -z "$(survivors)" ]; }
wait_for none_left 30 || fail "processes left: $(survivors)"
log "OK"
