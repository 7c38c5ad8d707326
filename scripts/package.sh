#!/usr/bin/env bash
# Build the installable artifacts into target/dist/ from ONE release-grade compile:
#
#   agentroom-<v>-py3-none-<platform>.whl      PyPI wheel (maturin, bindings = "bin"; with
#                                              the client python/agentroom: `import agentroom`)
#   agentroom-cli-<os>-<cpu>-<v>.tgz           npm platform package (@agentroom/cli-<os>-<cpu>)
#   agentroom-<v>.tgz                          npm package `agentroom` (launcher, no binary)
#   agentroom-v<v>-<target>.tar.gz, SHA256SUMS the bare binary, for scripts/install.sh
#
#   scripts/package.sh [--target TRIPLE]   (default: this machine's; Linux builds use
#                                           zig for the glibc 2.17 baseline)
#
# maturin compiles the binary once (profile `dist` in Cargo.toml) and packs the
# wheel; the npm platform package and the archive carry that same file, taken
# out of the wheel. On Linux the binary targets glibc 2.17 through `maturin --zig`
# (zig cc also compiles libsodium and SQLite), and scripts/check-glibc.sh checks it.
# Versions come from Cargo.toml (scripts/stamp-version.sh --check must pass).
#
# maturin and zig come from PyPI, pinned, into a venv under $AGENTROOM_CI_CACHE
# (default ~/.cache/agentroom-ci), as scripts/lint-ecosystem.sh does. Needs python3,
# node/npm, and binutils (objdump) for the glibc check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MATURIN_VERSION=1.16.0
ZIGLANG_VERSION=0.17.1
GLIBC_BASELINE=2.17

target=
while [[ $# -gt 0 ]]; do
    case $1 in
        --target) target=${2:?--target needs a triple}; shift 2 ;;
        *) echo "package.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
if [[ -z $target ]]; then
    target=$(rustc -vV | sed -n 's/^host: //p')
fi
case $target in
    x86_64-unknown-linux-gnu) npm_os=linux npm_cpu=x64 ;;
    aarch64-unknown-linux-gnu) npm_os=linux npm_cpu=arm64 ;;
    x86_64-apple-darwin) npm_os=darwin npm_cpu=x64 ;;
    aarch64-apple-darwin) npm_os=darwin npm_cpu=arm64 ;;
    *) echo "package.sh: no package defined for target $target" >&2; exit 2 ;;
esac

version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')
bash scripts/stamp-version.sh --check

# The pinned maturin and zig: the ones on PATH when they are those versions (an
# activated venv), else a venv in the cache. maturin --zig runs `python3 -m ziglang`
# with the python3 on PATH, so the venv goes first.
pinned_tools() {
    [[ $(maturin --version 2>/dev/null) == "maturin $MATURIN_VERSION" ]] \
        && [[ $(python3 -m ziglang version 2>/dev/null) == "$ZIGLANG_VERSION" ]]
}
if ! pinned_tools; then
    cache=${AGENTROOM_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentroom-ci}
    py_env="$cache/dist-py"
    if [[ ! -x $py_env/bin/pip ]]; then
        python3 -m venv "$py_env"
    fi
    export PATH="$py_env/bin:$PATH"
    if ! pinned_tools; then
        pip install --quiet --disable-pip-version-check \
            "maturin==$MATURIN_VERSION" "ziglang==$ZIGLANG_VERSION" </dev/null
    fi
fi

out=target/dist
# Only our own files: cargo keeps the `dist` profile's host artifacts (build
# scripts, proc macros) in target/dist/{build,deps,.fingerprint} too.
rm -rf "${out:?}/bin" "$out/npm" "$out/SHA256SUMS" "$out"/agentroom-*.whl "$out"/agentroom-*.tgz \
    "$out"/agentroom-v*.tar.gz
mkdir -p "$out/bin" "$out/npm"

maturin_args=(build --locked --profile dist --target "$target" --out "$out")
if [[ $npm_os == linux ]]; then
    maturin_args+=(--zig --compatibility manylinux2014)
fi
echo "package.sh: agentroom $version for $target (maturin ${maturin_args[*]})"
start=$(date +%s)
nice -n 10 maturin "${maturin_args[@]}" </dev/null
echo "package.sh: compile + wheel took $(($(date +%s) - start)) s"

wheels=("$out"/agentroom-"$version"-*.whl)
[[ -f ${wheels[0]} && ${#wheels[@]} -eq 1 ]] || { echo "package.sh: expected one wheel in $out" >&2; exit 1; }
wheel=${wheels[0]}
# The binary the wheel carries (agentroom-<v>.data/scripts/agentroom): the one we ship everywhere.
python3 - "$wheel" "$out/bin/agentroom" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".data/scripts/agentroom")]
    if len(names) != 1:
        sys.exit(f"package.sh: no agentroom binary in {wheel}: {z.namelist()}")
    with z.open(names[0]) as src, open(dest, "wb") as dst:
        dst.write(src.read())
PY
chmod 0755 "$out/bin/agentroom"
"$out/bin/agentroom" --version
if [[ $npm_os == linux ]]; then
    bash scripts/check-glibc.sh "$out/bin/agentroom" "$GLIBC_BASELINE"
fi

# The bare binary for scripts/install.sh and the GitHub release.
archive="agentroom-v$version-$target.tar.gz"
tar -czf "$out/$archive" -C "$out/bin" agentroom
if command -v sha256sum >/dev/null 2>&1; then
    (cd "$out" && sha256sum "$archive" >SHA256SUMS)
else
    (cd "$out" && shasum -a 256 "$archive" >SHA256SUMS)
fi

# npm platform package: the binary plus os/cpu (and libc on Linux) so npm installs it
# only where it runs.
plat="$out/npm/cli-$npm_os-$npm_cpu"
mkdir -p "$plat/bin"
cp "$out/bin/agentroom" "$plat/bin/agentroom"
libc_field=
if [[ $npm_os == linux ]]; then
    libc_field='"libc": ["glibc"],'
fi
cat >"$plat/package.json" <<JSON
{
  "name": "@agentroom/cli-$npm_os-$npm_cpu",
  "version": "$version",
  "description": "The agentroom binary for $npm_os $npm_cpu (installed by the agentroom package).",
  "license": "MIT OR Apache-2.0",
  "repository": { "type": "git", "url": "git+https://github.com/agentroom/agentroom.git" },
  "os": ["$npm_os"],
  "cpu": ["$npm_cpu"],
  $libc_field
  "files": ["bin/agentroom"],
  "preferUnplugged": true
}
JSON
cat >"$plat/README.md" <<MD
# @agentroom/cli-$npm_os-$npm_cpu

The \`agentroom\` binary for $npm_os $npm_cpu, installed by the \`agentroom\` package.
MD
(cd "$plat" && npm pack --silent --pack-destination "$(cd ../.. && pwd)" >/dev/null)

# The `agentroom` package: the launcher only (same on every platform).
cp -R npm/agentroom "$out/npm/agentroom"
(cd "$out/npm/agentroom" && npm pack --silent --pack-destination "$(cd ../.. && pwd)" >/dev/null)

echo "package.sh: artifacts in $out:"
(cd "$out" && ls -l ./*.whl ./*.tgz ./*.tar.gz bin/agentroom && cat SHA256SUMS)
