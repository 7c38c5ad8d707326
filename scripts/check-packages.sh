#!/usr/bin/env bash
# CI step, after scripts/package.sh: install what it built as a user without Rust
# would, with cargo removed from PATH, and run it.
#
#   npm:   the two tarballs (agentroom + @agentroom/cli-<os>-<cpu>) into a temp
#          prefix -> `agentroom --version`, `npx -y agentroom --version`, and
#          `agentroom mcp` answering initialize + tools/list over stdio; without
#          the platform package, a clear error
#   wheel: into a fresh venv -> the same, plus `import agentroom` (the Python
#          client) from the venv and its tests (python/tests) against the venv's binary
#   glibc: the shipped binary needs nothing above GLIBC_2.17 (Linux)
#   one binary: the wheel's and the npm package's are the same file
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

repo=$(pwd)
dist=$repo/target/dist
version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')
case "$(uname -s) $(uname -m)" in
    "Linux x86_64") plat=linux-x64 ;;
    "Linux aarch64") plat=linux-arm64 ;;
    "Darwin x86_64") plat=darwin-x64 ;;
    "Darwin arm64") plat=darwin-arm64 ;;
    *) echo "check-packages: no package for $(uname -sm)" >&2; exit 2 ;;
esac
main_tgz="$dist/agentroom-$version.tgz"
plat_tgz="$dist/agentroom-cli-$plat-$version.tgz"
wheels=("$dist"/agentroom-"$version"-*.whl)
for f in "$main_tgz" "$plat_tgz" "${wheels[0]}"; do
    [[ -f $f ]] || { echo "check-packages: $f missing; run scripts/package.sh first" >&2; exit 2; }
done

# No Rust from here on: drop cargo's and rustup's directories from PATH.
PATH=$(tr ':' '\n' <<<"$PATH" | grep -v -e '/\.cargo/' -e '/\.rustup/' | paste -sd: -)
export PATH
if command -v cargo >/dev/null 2>&1; then
    echo "check-packages: cargo is still on PATH ($(command -v cargo))" >&2
    exit 1
fi
echo "check-packages: PATH has no cargo"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CI=${CI:-true}

# The MCP handshake an MCP host does, then tools/list; prints the tool names.
cat >"$work/mcp_tools.py" <<'PY'
import json, signal, subprocess, sys
cmd = sys.argv[1:]
signal.alarm(120)  # a hung server fails the check (SIGALRM ends this script)
requests = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "check-packages", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]
proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
answers = {}
try:
    for req in requests:
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        if "id" not in req:
            continue
        while req["id"] not in answers:
            line = proc.stdout.readline()
            if not line:
                sys.exit(f"mcp server closed stdout before answering {req['method']}")
            msg = json.loads(line)  # stdout must be JSON-RPC only
            if "id" in msg:
                answers[msg["id"]] = msg
    proc.stdin.close()
    proc.wait(timeout=30)
finally:
    if proc.poll() is None:
        proc.kill()
init, tools = answers[1], answers[2]
if "result" not in init or "result" not in tools:
    sys.exit(f"mcp error: {init} {tools}")
names = sorted(t["name"] for t in tools["result"]["tools"])
for want in ("send", "next_message", "ack", "status"):
    if want not in names:
        sys.exit(f"tools/list lacks {want}: {names}")
print(f"{init['result']['serverInfo']['name']}: tools/list -> {', '.join(names)}")
PY
mcp_tools() { python3 "$work/mcp_tools.py" "$@"; }

expect_version() {
    local got
    got=$("$@")
    [[ $got == "agentroom $version" ]] || { echo "check-packages: '$*' printed '$got', want 'agentroom $version'" >&2; exit 1; }
    echo "ok: $* -> $got"
}

echo "== npm: install the tarballs into a temp prefix"
prefix="$work/npm"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$plat_tgz" "$main_tgz" </dev/null
expect_version "$prefix/node_modules/.bin/agentroom" --version
# npx resolves the installed package, as it does a cached one: no network, no cargo.
(cd "$prefix" && expect_version npx -y agentroom --version)
(cd "$prefix" && mcp_tools npx -y agentroom --home "$work/home-npm" mcp)
npm_bin="$prefix/node_modules/@agentroom/cli-$plat/bin/agentroom"
# Without its platform package the launcher says what is missing (exit 1).
npm install --prefix "$work/bare" --omit=optional --no-audit --no-fund --loglevel=error "$main_tgz" </dev/null
if "$work/bare/node_modules/.bin/agentroom" --version 2>"$work/bare.err"; then
    echo "check-packages: the launcher ran without a platform package" >&2
    exit 1
fi
grep -q "@agentroom/cli-$plat is not installed" "$work/bare.err" \
    || { echo "check-packages: unclear launcher error:" >&2; cat "$work/bare.err" >&2; exit 1; }
echo "ok: without @agentroom/cli-$plat the launcher exits 1 naming it"

echo "== wheel: install into a fresh venv"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "${wheels[0]}" </dev/null
expect_version "$work/venv/bin/agentroom" --version
mcp_tools "$work/venv/bin/agentroom" --home "$work/home-wheel" mcp
# The Python client ships in the same wheel (its sources, no bytecode from test runs),
# imported from the venv, not the source tree.
python3 - "${wheels[0]}" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
if "agentroom/_client.py" not in names or any("__pycache__" in n or n.endswith(".pyc") for n in names):
    sys.exit(f"check-packages: the wheel's Python client is wrong: {names}")
PY
(cd "$work" && "$work/venv/bin/python" -c 'import agentroom, sys; f = agentroom.__file__; sys.exit(0 if "/site-packages/agentroom/" in f else f"imported {f}")')
echo "ok: import agentroom from the wheel"
(cd "$work" && AGENTROOM_PY_SOURCE='' AGENTROOM_BIN="$work/venv/bin/agentroom" \
    "$work/venv/bin/python" -m unittest discover -s "$repo/python/tests")

echo "== one binary in both"
cmp "$npm_bin" "$work/venv/bin/agentroom"
echo "ok: the npm and wheel binaries are identical ($(wc -c <"$npm_bin") bytes)"

if [[ $plat == linux-* ]]; then
    echo "== glibc baseline"
    bash scripts/check-glibc.sh "$npm_bin" 2.17
fi
echo "check-packages: all checks passed"
