#!/usr/bin/env bash
# The main job, as a demo: install the peers, build, start OpenIPMI's ipmi_sim and
# a 1000-BMC ironrack simulator on loopback, and drive them with ironrack.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/install-peers.sh >/dev/null
export PATH="$REPO/.venv/bin:$PATH:/usr/sbin:/sbin"
cargo build --release -q
BIN="$REPO/target/release/ironrack"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

printf 'demo-%s' "$RANDOM$RANDOM" >"$WORK/pw"
chmod 600 "$WORK/pw"
step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

step "OpenIPMI ipmi_sim on 127.0.0.1:9623 (power and boot through its chassis_control script)"
IRONRACK_IPMI_SIM_PASSWORD_FILE="$WORK/pw" bash scripts/start-ipmi-sim.sh "$WORK/ipmi-sim" 9623 \
    </dev/null >"$WORK/ipmi_sim.log" 2>&1 &
PIDS+=($!)
python3 scripts/ipmi-sim-ready.py 9623 --timeout 30
IPMI=("$BIN" ipmi -H 127.0.0.1:9623 -U admin -f "$WORK/pw" --profile ipmi-sim)
run "${IPMI[@]}" power status
run "${IPMI[@]}" power on
run "${IPMI[@]}" --json power status
run "${IPMI[@]}" bootdev set pxe --persistent --uefi
run "${IPMI[@]}" bootdev get
run "${IPMI[@]}" power off
echo "chassis_control saw: power=$(cat "$WORK/ipmi-sim/power") boot=$(cat "$WORK/ipmi-sim/boot")"
"${IPMI[@]}" power nmi || echo "(ipmi_sim has no NMI; the profile refuses it locally)"

step "ironrack sim: 1000 BMCs on 127.0.0.1:21000-21999, suites 3 and 17"
"$BIN" sim --ipmi 127.0.0.1:21000 --count 1000 --password-file "$WORK/pw" --power-delay-ms 200 \
    >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
sleep 1
FLEET=("$BIN" ipmi -H '127.0.0.1:[21000-21999]' -U admin -f "$WORK/pw")
run "${FLEET[@]}" power on | tail -n 1
sleep 0.5
run "${FLEET[@]}" --repeat 3 power status | tail -n 2
run "$BIN" ipmi -H 127.0.0.1:21007 -U admin -f "$WORK/pw" -C 3 power nmi
run "$BIN" ipmi -H 127.0.0.1:21007 -U admin -f "$WORK/pw" -C 17 mc info

step "ipmitool as a client of the simulator"
run ipmitool -I lanplus -H 127.0.0.1 -p 21042 -U admin -f "$WORK/pw" -C 17 chassis power status

echo
echo "demo done"
