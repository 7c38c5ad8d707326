#!/usr/bin/env bash
# Install the agentroom binary: a released build when one exists for this platform
# (checked against the sha256 table in scripts/release-sha256.txt), else built here.
#
#   scripts/install.sh                      # -> ~/.local/bin/agentroom
#   scripts/install.sh --prefix /usr/local  # -> /usr/local/bin/agentroom
#   scripts/install.sh --build              # always build from this checkout
#   scripts/install.sh --debug              # build, faster to compile, slower binary
#
# The download needs curl (or wget) and sha256sum (or shasum); a file whose sha256
# is not the table's is refused and nothing is installed. Building needs a Rust
# toolchain (https://rustup.rs) and a C compiler (libsodium and SQLite are built from
# vendored sources). The binary is copied in atomically, so a running agentroom
# keeps its old file until it restarts.
#
# Environment: AGENTROOM_RELEASE_URL (base URL of the release assets, default the
# GitHub release of this version), AGENTROOM_RELEASE_SHA256 (the table file).
set -euo pipefail

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
}

prefix="${HOME:?HOME is not set}/.local"
profile=release
mode=auto
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
        --build)
            mode=build
            shift
            ;;
        --debug)
            profile=debug
            mode=build
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
version=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$repo/Cargo.toml" | head -n 1)
[[ -n $version ]] || { echo "install.sh: no version in $repo/Cargo.toml" >&2; exit 1; }
release_url=${AGENTROOM_RELEASE_URL:-https://github.com/agentroom/agentroom/releases/download/v$version}
sha_table=${AGENTROOM_RELEASE_SHA256:-$repo/scripts/release-sha256.txt}
bin_dir="$prefix/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copy a binary into $bin_dir atomically and report it.
install_binary() {
    mkdir -p "$bin_dir"
    local tmp="$bin_dir/.agentroom.tmp.$$"
    install -m 0755 "$1" "$tmp"
    mv -f "$tmp" "$bin_dir/agentroom"
    echo "install.sh: installed $bin_dir/agentroom ($("$bin_dir/agentroom" --version))" >&2
    case ":$PATH:" in
        *":$bin_dir:"*) ;;
        *) echo "install.sh: note: $bin_dir is not on PATH; add: export PATH=\"$bin_dir:\$PATH\"" >&2 ;;
    esac
}

# The Rust target name of this machine, when a release is built for it.
release_target() {
    case "$(uname -s) $(uname -m)" in
        "Linux x86_64") echo x86_64-unknown-linux-gnu ;;
        "Linux aarch64" | "Linux arm64") echo aarch64-unknown-linux-gnu ;;
        "Darwin x86_64") echo x86_64-apple-darwin ;;
        "Darwin arm64") echo aarch64-apple-darwin ;;
        *) return 1 ;;
    esac
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl --fail --silent --show-error --location --max-time 300 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget --quiet --timeout=60 -O "$2" "$1"
    else
        echo "install.sh: neither curl nor wget found" >&2
        return 1
    fi
}

# Download, verify and install the released binary. Returns 1 when there is none to
# download (no table entry, no tools, no network): the caller builds instead. Exits
# 1 when a downloaded file does not match the table: never run what we cannot check.
try_download() {
    local target asset want got
    target=$(release_target) || { echo "install.sh: no released binary for $(uname -sm)" >&2; return 1; }
    asset="agentroom-v$version-$target.tar.gz"
    want=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1 }' "$sha_table" 2>/dev/null | head -n 1)
    if [[ -z $want ]]; then
        echo "install.sh: no sha256 for $asset in $sha_table (not released yet)" >&2
        return 1
    fi
    command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1 \
        || { echo "install.sh: no sha256sum or shasum to check a download" >&2; return 1; }
    echo "install.sh: downloading $release_url/$asset" >&2
    fetch "$release_url/$asset" "$work/$asset" || { echo "install.sh: download failed" >&2; return 1; }
    got=$(sha256_of "$work/$asset")
    if [[ $got != "$want" ]]; then
        echo "install.sh: $asset has sha256 $got, expected $want: refusing it (nothing installed)" >&2
        exit 1
    fi
    mkdir "$work/x"
    tar -xzf "$work/$asset" -C "$work/x" agentroom
    install_binary "$work/x/agentroom"
}

build() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "install.sh: cargo not found. Install Rust from https://rustup.rs, then rerun." >&2
        exit 1
    fi
    if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1 && ! command -v clang >/dev/null 2>&1; then
        echo "install.sh: no C compiler found (cc, gcc or clang); install one (e.g. apt-get install build-essential)." >&2
        exit 1
    fi
    local cargo_args=(build --locked --bin agentroom --manifest-path "$repo/Cargo.toml")
    [[ $profile == release ]] && cargo_args+=(--release)
    echo "install.sh: building agentroom ($profile) in $repo" >&2
    cargo "${cargo_args[@]}"
    local target_dir built
    target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    built="${target_dir:-$repo/target}/$profile/agentroom"
    [[ -x $built ]] || { echo "install.sh: build finished but $built is missing" >&2; exit 1; }
    install_binary "$built"
}

if [[ $mode == auto ]] && try_download; then
    exit 0
fi
[[ $mode == auto ]] && echo "install.sh: building from source instead" >&2
build
