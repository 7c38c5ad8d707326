#!/usr/bin/env bash
# Relay load benchmark: builds benches/relay_load.rs in release, then runs it with
# the relay pinned to CPU 0 and the load generator to CPU 1 (when there are two).
#
#   scripts/bench-relay.sh                 # 50 pairs, 5 s per mode, 20k/s fixed rate, 20k offline
#   BENCH_SECS=2 BENCH_PAIRS=10 scripts/bench-relay.sh
#   scripts/bench-relay.sh --compare-forwarder   # issue 17: relay vs a bare forwarder
#
# --compare-forwarder runs BENCH_ROUNDS (3) interleaved rounds of the relay (its rate
# limits lifted) and of a bare tokio-tungstenite forwarder (benches/support/forwarder.rs:
# no auth, no parse, no disk) with the same load client and pinning, then the relay
# once with its shipped defaults, and prints medians and relay/forwarder ratios
# (window 16 unless BENCH_WINDOW says otherwise).
#
# Knobs: BENCH_PAIRS, BENCH_SECS, BENCH_WINDOW (in flight per sender), BENCH_RATE
# (fixed-rate mode, envelopes/s in total), BENCH_OFFLINE (envelopes queued for an
# offline recipient), RELAY_CPU / CLIENT_CPU (taskset CPU lists; empty = unpinned),
# BENCH_ROUNDS (compare mode), BENCH_RELAY_BIN (another relay build, e.g. a saved
# "before" binary, measured in place of this tree's).
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
    case $arg in
        --compare-forwarder)
            export BENCH_COMPARE=1
            export BENCH_WINDOW="${BENCH_WINDOW-16}"
            ;;
        *)
            echo "usage: scripts/bench-relay.sh [--compare-forwarder]" >&2
            exit 2
            ;;
    esac
done

cpus=$(nproc)
if [[ $cpus -ge 2 ]] && command -v taskset >/dev/null; then
    export RELAY_CPU="${RELAY_CPU-0}"
    CLIENT_CPU="${CLIENT_CPU-1}"
else
    export RELAY_CPU="${RELAY_CPU-}"
    CLIENT_CPU="${CLIENT_CPU-}"
fi

# Build first so the pin applies to the benchmark only, not to the compiler.
bin=$(cargo bench --bench relay_load --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*relay_load[^"]*\)".*/\1/p' | tail -1)
if [[ -z $bin ]]; then
    cargo bench --bench relay_load --no-run
    echo "bench-relay: could not find the relay_load executable" >&2
    exit 1
fi

if [[ -n $CLIENT_CPU ]]; then
    exec taskset -c "$CLIENT_CPU" "$bin"
else
    exec "$bin"
fi
