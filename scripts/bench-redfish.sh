#!/usr/bin/env bash
# Power-state sweep of 1000 simulated Redfish systems (one `ironrack sim`
# process, many ids), measured in one run:
#   1. ironrack, cold (a fresh process: discovery, sessions, connections);
#   2. ironrack, warm (the same sessions and pooled connections, --repeat);
#   3. sushy (OpenStack's Python Redfish client, as Ironic uses it): one
#      session, a loop over the systems, the way a conductor's sync reads them.
# Prints a table and the ratios. Not a test: nothing asserts a time.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${COUNT:-1000}"
PORT="${PORT:-18443}"
WARM_SWEEPS="${WARM_SWEEPS:-5}"
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || { echo "bench-redfish: no venv; run scripts/install-peers.sh" >&2; exit 2; }

cd "$REPO"
cargo build --release -q
BIN="$REPO/target/release/ironrack"

WORK="$(mktemp -d)"
SIM_PID=""
cleanup() {
    [[ -n "$SIM_PID" ]] && kill "$SIM_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

printf 'bench-%s' "$RANDOM$RANDOM" >"$WORK/pw"
chmod 600 "$WORK/pw"
"$BIN" sim --redfish "127.0.0.1:$PORT" --count "$COUNT" --password-file "$WORK/pw" \
    --stats-file "$WORK/stats.json" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
    curl -fs "$URL/redfish/v1/" >/dev/null 2>&1 && break
    sleep 0.1
done
LAST=$(printf 'sys-%04d' $((COUNT - 1)))
RANGE="sys-[0000-$(printf '%04d' $((COUNT - 1)))]"

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.4f}')" "$1" "$2"; }

echo "bench-redfish: $COUNT simulated Redfish systems behind $URL, $(nproc) cores" >&2
RF=("$BIN" redfish --url "$URL" -U admin -f "$WORK/pw" --profile ironrack-sim --system "$RANGE")

t0=$(now)
"${RF[@]}" power status >"$WORK/cold.out"
t1=$(now)
COLD=$(elapsed "$t0" "$t1")
grep -q "$COUNT hosts: $COUNT ok" "$WORK/cold.out" || { tail -3 "$WORK/cold.out"; exit 1; }

"${RF[@]}" --repeat $((WARM_SWEEPS + 1)) --json power status >"$WORK/warm.json"
WARM=$(python3 - "$WORK/warm.json" "$COUNT" <<'EOF'
import json, statistics, sys
v = json.load(open(sys.argv[1]))
assert v["ok"] == int(sys.argv[2]), v["failed"]
print(f'{statistics.median(v["sweeps_s"][1:]):.4f}')
EOF
)

SUSHY=$(REDFISH_PASSWORD="$(cat "$WORK/pw")" "$PY" - "$URL" "$COUNT" <<'EOF'
import os, sys, time
import sushy
url, count = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic()
conn = sushy.Sushy(url + "/redfish/v1", username="admin", password=os.environ["REDFISH_PASSWORD"])
states = {}
for i in range(count):
    s = conn.get_system(f"/redfish/v1/Systems/sys-{i:04d}")
    states[s.power_state] = states.get(s.power_state, 0) + 1
t = time.monotonic() - t0
assert sum(states.values()) == count, states
print(f"{t:.4f}")
EOF
)

python3 - "$COUNT" "$COLD" "$WARM" "$SUSHY" <<'EOF'
import sys
count = int(sys.argv[1])
cold, warm, sushy = map(float, sys.argv[2:5])
rows = [
    ("ironrack, cold (new process, discovery, sessions)", cold),
    ("ironrack, warm (reused sessions, median)", warm),
    ("sushy 5.14 loop (one session)", sushy),
]
print(f"| power state of {count} Redfish systems | seconds | systems/s |")
print("|---|---:|---:|")
for name, t in rows:
    print(f"| {name} | {t:.3f} | {count / t:,.0f} |")
print()
print(f"warm vs sushy: {sushy / warm:8.1f}x")
print(f"cold vs sushy: {sushy / cold:8.1f}x")
EOF
