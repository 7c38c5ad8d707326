#!/usr/bin/env bash
# Build agentroom from this checkout with cargo and install the binary.
#
#   scripts/install.sh                    # -> ~/.local/bin/agentroom
#   scripts/install.sh --prefix /usr/local  # -> /usr/local/bin/agentroom
#   scripts/install.sh --debug            # faster build, slower binary
#
# Needs a Rust toolchain (https://rustup.rs) and a C compiler (libsodium and SQLite
# are built from vendored sources). The binary is copied in atomically, so a running
# agentroom keeps its old file until it restarts.
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

prefix="${HOME:?HOME is not set}/.local"
profile=release
while [[ $# -gt 0 ]]; do
    case $1 in
        --prefix)
            [[ $# -ge 2 ]] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
            prefix=$2
            shift 2
            ;;
        --prefix=*)
            prefix=${1#--prefix=}
            shift
            ;;
        --debug)
            profile=debug
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "install.sh: unknown option '$1' (try --help)" >&2
            exit 2
            ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v cargo >/dev/null 2>&1; then
    echo "install.sh: cargo not found. Install Rust from https://rustup.rs, then rerun." >&2
    exit 1
fi
if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1 && ! command -v clang >/dev/null 2>&1; then
    echo "install.sh: no C compiler found (cc, gcc or clang); install one (e.g. apt-get install build-essential)." >&2
    exit 1
fi

cargo_args=(build --locked --bin agentroom --manifest-path "$repo/Cargo.toml")
[[ $profile == release ]] && cargo_args+=(--release)
echo "install.sh: building agentroom ($profile) in $repo" >&2
cargo "${cargo_args[@]}"

target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
built="${target_dir:-$repo/target}/$profile/agentroom"
[[ -x $built ]] || { echo "install.sh: build finished but $built is missing" >&2; exit 1; }

bin_dir="$prefix/bin"
mkdir -p "$bin_dir"
tmp="$bin_dir/.agentroom.tmp.$$"
trap 'rm -f "$tmp"' EXIT
install -m 0755 "$built" "$tmp"
mv -f "$tmp" "$bin_dir/agentroom"
trap - EXIT

echo "install.sh: installed $bin_dir/agentroom ($("$bin_dir/agentroom" --version))" >&2
case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) echo "install.sh: note: $bin_dir is not on PATH; add: export PATH=\"$bin_dir:\$PATH\"" >&2 ;;
esac
