#!/usr/bin/env bash
# CI step: check `agentroom mcp` with a real MCP client, the MCP Inspector's CLI
# mode (npm @modelcontextprotocol/inspector, pinned). Run after `cargo build`:
#
#   scripts/check-mcp-inspector.sh [path/to/agentroom]   (default target/debug/agentroom)
#
# Each Inspector call starts its own `agentroom mcp` process, as an MCP host
# does. Checks: tools/list names the eight tools; status answers; an argument
# out of range is a tool error; and a full round trip through a local relay:
# invite_create (Inspector) -> invite accept + send (CLI peer) -> next_message
# (Inspector, a new server process) -> ack (another one), then the message is
# gone. The lease outlives each process because it lives in the state database.
#
# The Inspector is installed on first use into its own npm prefix under
# $AGENTROOM_CI_CACHE (default ~/.cache/agentroom-ci, the cache
# scripts/lint-ecosystem.sh uses; a separate prefix because `npm install
# --no-save` prunes packages it was not asked for). Only loopback networking.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# 0.21.1 declares node >= 22.7.5 but its CLI mode runs on Node 20 too (checked
# here on 20.20); newer majors need Node 22.19+.
INSPECTOR_VERSION=0.21.1

bin=$(realpath "${1:-target/debug/agentroom}")
if [[ ! -x $bin ]]; then
    echo "check-mcp-inspector: $bin is not an executable; run cargo build first" >&2
    exit 2
fi
cache=${AGENTROOM_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentroom-ci}
prefix="$cache/inspector"
export CI=${CI:-true}

installed=$(node -p "require('$prefix/node_modules/@modelcontextprotocol/inspector/package.json').version" 2>/dev/null || true)
if [[ $installed != "$INSPECTOR_VERSION" ]]; then
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
        "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" </dev/null
fi
inspector="$prefix/node_modules/.bin/mcp-inspector"
echo "inspector: @modelcontextprotocol/inspector@$INSPECTOR_VERSION, node $(node --version)"
echo "server:    $bin mcp"

work=$(mktemp -d)
relay_pid=
cleanup() {
    if [[ -n $relay_pid ]]; then
        kill "$relay_pid" 2>/dev/null || true
        wait "$relay_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mcp_home="$work/mcp"
peer_home="$work/peer"

# Debug logs prove stdout stays JSON-RPC only: the Inspector fails on anything else.
inspect() {
    LOG_LEVEL=debug timeout 120 "$inspector" --cli "$bin" mcp --home "$mcp_home" "$@" \
        2>>"$work/inspector.stderr"
}

# assert FILE JS-EXPRESSION MESSAGE: evaluate the expression with `r` bound to the
# file's JSON (and `s` to r.structuredContent); fail with MESSAGE and the JSON.
assert() {
    node - "$1" "$2" "$3" <<'EOF'
const fs = require('fs');
const [file, expr, message] = process.argv.slice(2);
const raw = fs.readFileSync(file, 'utf8');
let r;
try { r = JSON.parse(raw); } catch (e) { console.error(`not JSON (${e.message}):\n${raw}`); process.exit(1); }
const s = r.structuredContent;
if (!eval(expr)) { console.error(`FAILED: ${message}\n${raw}`); process.exit(1); }
console.log(`ok: ${message}`);
EOF
}

field() { node -p "JSON.parse(require('fs').readFileSync('$1','utf8')).structuredContent.$2"; }

inspect --method tools/list >"$work/list.json"
assert "$work/list.json" \
    'JSON.stringify(r.tools.map(t => t.name).sort()) === JSON.stringify(["ack","invite_accept","invite_create","next_message","peers","peers_update","send","status"])' \
    "tools/list names send, next_message, ack, peers, peers_update, invite_create, invite_accept, status"

inspect --method tools/call --tool-name status >"$work/status.json"
assert "$work/status.json" \
    'r.isError === false && /^[0-9a-f ]{20,}$/.test(s.identity.fingerprint) && Array.isArray(s.relays) && s.inbox.waiting === 0' \
    "tools/call status reports the identity and queues"

inspect --method tools/call --tool-name next_message --tool-arg timeout_secs=999 >"$work/bad.json"
assert "$work/bad.json" \
    'r.isError === true && r.content[0].text.includes("timeout_secs must be between")' \
    "an out-of-range argument is a tool error with a clear message"

# Round trip through a real relay on a free loopback port.
mkdir -p "$work/relay"
"$bin" --home "$work/relay" --json relay --bind 127.0.0.1 --port 0 >"$work/relay.out" 2>"$work/relay.err" &
relay_pid=$!
for _ in $(seq 1 300); do
    [[ -s $work/relay.out ]] && break
    if ! kill -0 "$relay_pid" 2>/dev/null; then
        echo "check-mcp-inspector: the relay exited:" >&2
        cat "$work/relay.err" >&2
        exit 1
    fi
    sleep 0.1
done
relay_url=$(node -p "JSON.parse(require('fs').readFileSync('$work/relay.out','utf8').split('\n')[0]).url")
echo "relay:     $relay_url"

inspect --method tools/call --tool-name invite_create \
    --tool-arg "relay=$relay_url" --tool-arg label=peer --tool-arg expires=10m >"$work/invite.json"
assert "$work/invite.json" 'r.isError === false && s.invite.startsWith("ar1.")' "invite_create returns an invite"
invite=$(field "$work/invite.json" invite)

"$bin" --home "$peer_home" --json setup >/dev/null
"$bin" --home "$peer_home" --json invite accept "$invite" --label mcp >/dev/null
"$bin" --home "$peer_home" --json send mcp "hello through the inspector" >/dev/null

inspect --method tools/call --tool-name next_message --tool-arg timeout_secs=60 >"$work/next.json"
assert "$work/next.json" \
    'r.isError === false && s.message && s.message.text === "hello through the inspector" && s.message.label === "peer"' \
    "next_message (new server process) returns the peer's message, leased"
lease=$(field "$work/next.json" message.lease_id)

inspect --method tools/call --tool-name ack --tool-arg "lease_id=$lease" >"$work/ack.json"
assert "$work/ack.json" 'r.isError === false && s.status === "acked"' "ack (another process) consumes it"

inspect --method tools/call --tool-name status >"$work/status2.json"
assert "$work/status2.json" \
    'r.isError === false && s.peers.length === 1 && s.inbox.waiting === 0 && s.inbox.leased === 0' \
    "status: one peer, nothing left in the inbox"

echo "check-mcp-inspector: all checks passed"
