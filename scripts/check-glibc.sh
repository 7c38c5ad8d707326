#!/usr/bin/env bash
# Fail when a Linux binary needs a newer glibc than the baseline we promise.
#
#   scripts/check-glibc.sh BINARY [MAX]     (MAX defaults to 2.17, manylinux2014)
#
# Reads the versioned dynamic symbols (objdump -T, else readelf) and prints the
# highest GLIBC_x.y any of them needs.
set -euo pipefail

bin=${1:?usage: check-glibc.sh BINARY [MAX]}
max=${2:-2.17}
[[ -f $bin ]] || { echo "check-glibc: $bin: no such file" >&2; exit 2; }

if command -v objdump >/dev/null 2>&1; then
    symbols=$(objdump -T "$bin")
elif command -v readelf >/dev/null 2>&1; then
    symbols=$(readelf -W --dyn-syms "$bin")
else
    echo "check-glibc: needs objdump or readelf (Debian: binutils)" >&2
    exit 2
fi
highest=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$symbols" | sed 's/^GLIBC_//' | sort -uV | tail -n 1 || true)
if [[ -z $highest ]]; then
    echo "check-glibc: $bin has no GLIBC-versioned symbols (static or not a glibc binary)" >&2
    exit 1
fi
if [[ $(printf '%s\n%s\n' "$highest" "$max" | sort -V | tail -n 1) != "$max" ]]; then
    echo "check-glibc: $bin needs GLIBC_$highest, above the GLIBC_$max baseline:" >&2
    grep "GLIBC_$highest" <<<"$symbols" | head -n 20 >&2
    exit 1
fi
echo "check-glibc: highest symbol version GLIBC_$highest (baseline GLIBC_$max): ok"
