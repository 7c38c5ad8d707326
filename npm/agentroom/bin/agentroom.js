#!/usr/bin/env node
// Launcher for the agentroom binary. The binary itself ships in one platform
// package per OS and CPU (@agentroom/cli-<os>-<cpu>), declared as optional
// dependencies with `os`/`cpu` fields, so npm installs only the one that fits
// (the esbuild/biome pattern). This file finds it and runs it with our argv and
// stdio (stdin/stdout stay the binary's own, so `agentroom mcp` speaks JSON-RPC
// straight to the MCP host), forwards termination signals and exits with its code.
'use strict';

const { spawn } = require('child_process');
const path = require('path');
const fs = require('fs');

const PLATFORMS = {
  'linux x64': '@agentroom/cli-linux-x64',
  'linux arm64': '@agentroom/cli-linux-arm64',
  'darwin x64': '@agentroom/cli-darwin-x64',
  'darwin arm64': '@agentroom/cli-darwin-arm64',
};

function fail(message) {
  process.stderr.write(`agentroom: ${message}\n`);
  process.exit(1);
}

function binaryPath() {
  const key = `${process.platform} ${process.arch}`;
  const pkg = PLATFORMS[key];
  if (!pkg) {
    fail(
      `no prebuilt binary for ${key} (prebuilt: ${Object.keys(PLATFORMS).join(', ')}).\n` +
        'Build from source instead: cargo install --locked agentroom (needs Rust and a C compiler).',
    );
  }
  let dir;
  try {
    dir = path.dirname(require.resolve(`${pkg}/package.json`));
  } catch (_) {
    fail(
      `the platform package ${pkg} is not installed.\n` +
        'npm skips optional dependencies with --no-optional / --omit=optional, and on a libc it\n' +
        `was not built for (the Linux binaries need glibc 2.17 or newer). Reinstall with: npm install ${pkg}`,
    );
  }
  const bin = path.join(dir, 'bin', 'agentroom');
  if (!fs.existsSync(bin)) fail(`${pkg} is installed but has no ${bin}; reinstall it`);
  return bin;
}

const child = spawn(binaryPath(), process.argv.slice(2), { stdio: 'inherit' });
// A host's SIGTERM/SIGHUP reaches only us: pass it on. Ctrl-C already reaches the
// whole foreground process group, so SIGINT is only kept from killing us first.
for (const sig of ['SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  });
}
process.on('SIGINT', () => {});
child.on('error', (err) => fail(`cannot run the binary: ${err.message}`));
child.on('exit', (code, signal) => {
  if (signal) {
    // Die of the same signal, so our parent sees what the binary saw.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
