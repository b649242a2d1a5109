#!/usr/bin/env bash
# Agent benchmark (issue 4): 10,000 enrolled nodes, 1000 on live simulated
# BMCs. Prints the sync sweep duration, the node list p50/p99 and the agent's
# RSS, with an Ironic-style ipmitool-per-node sweep measured in the same run.
# Not a test: nothing here asserts a time.
#
#   scripts/bench-agent.sh
#   TOTAL=2000 LIVE=200 scripts/bench-agent.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
command -v ipmitool >/dev/null 2>&1 || { echo "bench-agent: ipmitool missing; run scripts/install-peers.sh" >&2; exit 2; }
cargo build --release -q
exec python3 "$REPO/scripts/bench-agent.py" --bin "$REPO/target/release/ironrack" \
    --total "${TOTAL:-10000}" --live "${LIVE:-1000}" --sim-port "${PORT:-24000}" \
    ${OUT:+--out "$OUT"} "$@"
