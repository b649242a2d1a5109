#!/usr/bin/env bash
# Power-status sweep of a simulated fleet, measured in one run against the peers:
#   1. ironrack fleet mode, cold (a fresh process: every session is opened);
#   2. ironrack, warm (a long-lived client: the same sessions, --repeat);
#   3. FreeIPMI's ipmipower on the same fleet;
#   4. an ipmitool-per-call loop on a sample, scaled to the fleet.
# Prints a table and the ratios. Not a test: nothing here asserts a time.
#
#   scripts/bench-ipmi.sh            # 1000 BMCs, suite 17, 50-BMC ipmitool sample
#   COUNT=200 SUITE=3 scripts/bench-ipmi.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${COUNT:-1000}"
SAMPLE="${SAMPLE:-50}"
SUITE="${SUITE:-17}"
PORT="${PORT:-23000}"
WARM_SWEEPS="${WARM_SWEEPS:-5}"

for b in ipmitool ipmipower; do
    command -v "$b" >/dev/null 2>&1 || [[ -x "/usr/sbin/$b" ]] || {
        echo "bench-ipmi: $b missing; run scripts/install-peers.sh" >&2
        exit 2
    }
done
IPMIPOWER="$(command -v ipmipower || echo /usr/sbin/ipmipower)"

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
printf 'username admin\npassword %s\n' "$(cat "$WORK/pw")" >"$WORK/freeipmi.conf"
chmod 600 "$WORK/freeipmi.conf"

"$BIN" sim --ipmi "127.0.0.1:$PORT" --count "$COUNT" --password-file "$WORK/pw" \
    --stats-file "$WORK/sim-stats.json" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!

LAST=$((PORT + COUNT - 1))
for _ in $(seq 1 100); do
    if "$BIN" ipmi -H "127.0.0.1:$LAST" -U admin -f "$WORK/pw" --timeout 1 power status >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done

: >"$WORK/hosts"
HOSTLIST=""
for i in $(seq 0 $((COUNT - 1))); do
    echo "127.0.0.1:$((PORT + i))" >>"$WORK/hosts"
    HOSTLIST+="127.0.0.1:$((PORT + i)),"
done
HOSTLIST="${HOSTLIST%,}"

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.4f}')" "$1" "$2"; }

echo "bench-ipmi: $COUNT simulated BMCs, cipher suite $SUITE, $(nproc) cores" >&2

# 1. ironrack cold: one process, one sweep, every session new (process start included).
t0=$(now)
"$BIN" ipmi --hosts-file "$WORK/hosts" -U admin -f "$WORK/pw" -C "$SUITE" power status >"$WORK/cold.out"
t1=$(now)
COLD=$(elapsed "$t0" "$t1")
grep -q "$COUNT hosts: $COUNT ok" "$WORK/cold.out" || { tail -3 "$WORK/cold.out"; exit 1; }

# 2. ironrack warm: one long-lived client; the first sweep opens, the rest reuse.
"$BIN" ipmi --hosts-file "$WORK/hosts" -U admin -f "$WORK/pw" -C "$SUITE" \
    --repeat $((WARM_SWEEPS + 1)) --json power status >"$WORK/warm.json"
WARM=$(python3 - "$WORK/warm.json" "$COUNT" <<'EOF'
import json, statistics, sys
v = json.load(open(sys.argv[1]))
assert v["ok"] == int(sys.argv[2]), v["failed"]
print(f'{statistics.median(v["sweeps_s"][1:]):.4f}')
EOF
)

# 3. ipmipower on the same fleet (its default fan-out).
t0=$(now)
"$IPMIPOWER" --config-file "$WORK/freeipmi.conf" -D LAN_2_0 -I "$SUITE" -h "$HOSTLIST" --stat >"$WORK/ipmipower.out" 2>&1 || true
t1=$(now)
IPMIPOWER_T=$(elapsed "$t0" "$t1")
OKP=$(grep -cE ': (on|off)$' "$WORK/ipmipower.out" || true)
[[ "$OKP" -eq "$COUNT" ]] || { echo "ipmipower answered $OKP of $COUNT" >&2; tail -3 "$WORK/ipmipower.out" >&2; }

# 4. ipmitool, one process per BMC, on a sample; scaled to the fleet.
t0=$(now)
for i in $(seq 0 $((SAMPLE - 1))); do
    ipmitool -I lanplus -H 127.0.0.1 -p $((PORT + i)) -U admin -f "$WORK/pw" -C "$SUITE" \
        chassis power status >/dev/null
done
t1=$(now)
IPMITOOL_SAMPLE=$(elapsed "$t0" "$t1")

python3 - "$COUNT" "$SAMPLE" "$COLD" "$WARM" "$IPMIPOWER_T" "$IPMITOOL_SAMPLE" "$OKP" <<'EOF'
import sys
count, sample = int(sys.argv[1]), int(sys.argv[2])
cold, warm, ipmipower, tool_sample = map(float, sys.argv[3:7])
okp = int(sys.argv[7])
tool = tool_sample * count / sample
rows = [
    ("ironrack fleet, cold (new process, new sessions)", cold),
    ("ironrack fleet, warm (reused sessions, median)", warm),
    (f"ipmipower ({okp}/{count} answered)", ipmipower),
    (f"ipmitool per call ({sample} measured, scaled)", tool),
]
print(f"| power status of {count} BMCs | seconds | BMCs/s |")
print("|---|---:|---:|")
for name, t in rows:
    print(f"| {name} | {t:.3f} | {count / t:,.0f} |")
print()
print(f"warm vs ipmipower:         {ipmipower / warm:8.1f}x")
print(f"warm vs ipmitool per call: {tool / warm:8.1f}x")
print(f"cold vs ipmipower:         {ipmipower / cold:8.1f}x")
print(f"cold vs ipmitool per call: {tool / cold:8.1f}x")
EOF

python3 - "$WORK/sim-stats.json" <<'EOF' || true
import json, sys, time
time.sleep(1.2)
s = json.load(open(sys.argv[1]))
opened = sum(b["stats"]["sessions_opened"] for b in s)
peak = max(b["stats"]["sessions_active"] for b in s)
print(f"simulator: {opened} sessions opened in all; at most {peak} open on one BMC at the end")
EOF
