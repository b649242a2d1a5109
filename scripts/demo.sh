#!/usr/bin/env bash
# The main job, as a demo: install the peers, build, start OpenIPMI's ipmi_sim,
# sushy-emulator and ironrack's IPMI and Redfish simulators on loopback, and drive
# them all with ironrack.
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

step "sushy-emulator --fake on 127.0.0.1:8123 (Redfish; power lands 1-11 s later)"
cat >"$WORK/sushy.conf" <<CONF
SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = 8123
SUSHY_EMULATOR_STATE_DIR = '$WORK/sushy-state'
CONF
sushy-emulator --fake --config "$WORK/sushy.conf" </dev/null >"$WORK/sushy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:8123/redfish/v1/ >/dev/null 2>&1 && break; sleep 0.2; done
RF=("$BIN" redfish --url http://127.0.0.1:8123 -U admin -f "$WORK/pw")
run "${RF[@]}" power status
run "${RF[@]}" power on
run "${RF[@]}" bootdev set pxe
run "${RF[@]}" --json bootdev get
run "${RF[@]}" bootdev supported
run "${RF[@]}" power nmi || echo "(sushy's fake driver has no NMI)"

step "ironrack sim --redfish: 1000 systems behind 127.0.0.1:8124, with sessions and Nmi"
"$BIN" sim --redfish 127.0.0.1:8124 --count 1000 --password-file "$WORK/pw" --power-delay-ms 200 \
    >"$WORK/rfsim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:8124/redfish/v1/ >/dev/null 2>&1 && break; sleep 0.1; done
RS=("$BIN" redfish --url http://127.0.0.1:8124 -U admin -f "$WORK/pw")
run "${RS[@]}" --system sys-0042 power on
run "${RS[@]}" --system sys-0042 power nmi
run "${RS[@]}" --system sys-0042 vmedia insert http://127.0.0.1:8080/deploy.iso
run "${RS[@]}" --system sys-0042 vmedia status
run "${RS[@]}" --system 'sys-[0000-0999]' --repeat 3 power status | tail -n 2

step "ipmitool as a client of the simulator"
run ipmitool -I lanplus -H 127.0.0.1 -p 21042 -U admin -f "$WORK/pw" -C 17 chassis power status

echo
echo "demo done"
