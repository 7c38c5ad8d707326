#!/usr/bin/env bash
# One version for every package: Cargo.toml's [package] version is stamped into
# the npm package, the Claude Code plugin and its marketplace entry (the wheel
# reads it itself: pyproject.toml has `dynamic = ["version"]`, filled by maturin).
#
#   scripts/stamp-version.sh           rewrite the files to Cargo.toml's version
#   scripts/stamp-version.sh --check   exit 1 and name every file that differs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="write"
case ${1:-} in
    --check) mode=check ;;
    "") ;;
    *) echo "stamp-version: unknown option '$1' (use --check)" >&2; exit 2 ;;
esac

python3 - "$mode" <<'PY'
import re, sys, tomllib
from pathlib import Path

mode = sys.argv[1]
with open("Cargo.toml", "rb") as f:
    version = tomllib.load(f)["package"]["version"]

# Each rule rewrites one kind of version mention; the text around it is kept as is
# (no JSON re-serialisation, so the files' layout never churns).
rules = [
    (re.compile(r'("version":\s*")[^"]*(")'), rf"\g<1>{version}\g<2>"),
    (re.compile(r'("@agentroom/cli-[a-z0-9-]+":\s*")[^"]*(")'), rf"\g<1>{version}\g<2>"),
    (re.compile(r"(agentroom@)[0-9][0-9A-Za-z.+-]*"), rf"\g<1>{version}"),
]
files = [
    "npm/agentroom/package.json",
    ".claude-plugin/plugin.json",
    ".claude-plugin/marketplace.json",
]
stale = []
for name in files:
    path = Path(name)
    old = path.read_text()
    new = old
    for pattern, repl in rules:
        new = pattern.sub(repl, new)
    if new != old:
        stale.append(name)
        if mode == "write":
            path.write_text(new)
if mode == "check" and stale:
    print(f"stamp-version: not at Cargo.toml's version {version}: {', '.join(stale)}", file=sys.stderr)
    print("stamp-version: run scripts/stamp-version.sh and commit", file=sys.stderr)
    sys.exit(1)
print(f"stamp-version: {version} ({'stamped ' + ', '.join(stale) if stale else 'all files current'})")
PY
