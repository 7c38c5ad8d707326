#!/usr/bin/env bash
# Per-pair delivery order soak (issue 18): runs the two order tests of
# tests/relay/order.rs (recipient's TCP path cut mid-stream; relay SIGKILLed
# mid-stream and restarted) for many more repetitions than `cargo test` does.
# Each repetition streams 100 envelopes with 50 in flight and breaks the stream
# at a random point; a failure prints its ORDER_SEED so it can be replayed.
#
#   scripts/soak-order.sh                          # 10 rounds x 200 repetitions per test
#   SOAK_ROUNDS=100 ORDER_REPS=500 scripts/soak-order.sh
#   ORDER_SEED=1234 SOAK_ROUNDS=1 scripts/soak-order.sh   # replay one seed
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${SOAK_ROUNDS:-10}"
export ORDER_REPS="${ORDER_REPS:-200}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --test relay --no-run >/dev/null 2>&1 || cargo test --test relay --no-run
started=$(date +%s)
for round in $(seq 1 "$rounds"); do
    if ! cargo test -q --test relay order_kept -- --nocapture >"$log" 2>&1; then
        cat "$log"
        echo "soak-order: FAILED in round $round/$rounds" >&2
        exit 1
    fi
    echo "soak-order: round $round/$rounds ok ($ORDER_REPS repetitions per test, $(grep -o 'ORDER_SEED=[0-9]*' "$log" | tr '\n' ' '))"
done
total=$((rounds * ORDER_REPS))
echo "soak-order: $total cut repetitions and $total SIGKILL repetitions in order, $(( $(date +%s) - started )) s"
