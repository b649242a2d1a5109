#!/usr/bin/env bash
# The main job, as a demo: install the peers, build, start OpenIPMI's ipmi_sim,
# sushy-emulator and ironrack's IPMI and Redfish simulators on loopback; drive
# them briefly with the ironrack BMC clients, then run the agent
# (`ironrack serve`, embedded SQLite store) and drive it with the stock
# `baremetal` CLI and the Nova-side `ironrack driver`.
#
#   bash scripts/demo.sh
#   IRONRACK_DEMO_KEEP=1 bash scripts/demo.sh   # keep the temp dir (store, logs)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
T0=$SECONDS

bash scripts/install-peers.sh >/dev/null
export PATH="$REPO/.venv/bin:$PATH:/usr/sbin:/sbin"
cargo build --release -q
BIN="$REPO/target/release/ironrack"
echo "(peers installed and ironrack built in $((SECONDS - T0)) s)"

WORK="$(mktemp -d -t ironrack-demo.XXXXXX)"
PIDS=()
AGENT_PID=""
cleanup() {
    local rc=$?
    trap - ERR
    if [[ -n "$AGENT_PID" ]]; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $rc -ne 0 ]]; then
        printf '\ndemo FAILED (exit %d)\n' "$rc" >&2
        if [[ -f "$WORK/agent.log" ]]; then
            echo "--- last lines of the agent's log ($WORK/agent.log):" >&2
            tail -n 20 "$WORK/agent.log" >&2
        fi
    fi
    if [[ "${IRONRACK_DEMO_KEEP:-0}" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
set -E # the ERR trap in functions too
trap 'echo "demo: line $LINENO${FUNCNAME:+ (in ${FUNCNAME[0]}, from line ${BASH_LINENO[*]: -2:1})}: $BASH_COMMAND failed" >&2' ERR

# The demo's BMC password: in a 0600 file, read by our tools with -f /
# --password-file, never on their command lines.
(umask 077 && printf 'demo-%s' "$RANDOM$RANDOM" >"$WORK/pw")
PW="$(cat "$WORK/pw")"

part() { printf '\n######## %s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
# Print the command (with the password masked) and run it.
run() {
    local s="$*"
    printf '$ %s\n' "${s//"$PW"/******}" >&2
    "$@"
}
die() { echo "demo: $*" >&2; exit 1; }
# Poll URL until it answers (at most 30 s).
wait_http() {
    local _
    for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "$1 did not answer within 30 s"
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

part "1. The peers, and ironrack as a BMC client"

step "OpenIPMI ipmi_sim on 127.0.0.1:9623 (power and boot through its chassis_control script)"
IRONRACK_IPMI_SIM_PASSWORD_FILE="$WORK/pw" bash scripts/start-ipmi-sim.sh "$WORK/ipmi-sim" 9623 \
    </dev/null >"$WORK/ipmi_sim.log" 2>&1 &
PIDS+=($!)
python3 scripts/ipmi-sim-ready.py 9623 --timeout 30
IPMI=("$BIN" ipmi -H 127.0.0.1:9623 -U admin -f "$WORK/pw" --profile ipmi-sim)
run "${IPMI[@]}" power status
run "${IPMI[@]}" bootdev set pxe --persistent --uefi
run "${IPMI[@]}" bootdev get
echo "chassis_control saw: power=$(cat "$WORK/ipmi-sim/power") boot=$(cat "$WORK/ipmi-sim/boot")"
"${IPMI[@]}" power nmi || echo "(ipmi_sim has no NMI; the profile refuses it locally)"

step "ironrack sim: 1000 IPMI BMCs on 127.0.0.1:21000-21999 (suites 3 and 17, NMI) and 1000 Redfish systems behind 127.0.0.1:8124"
# Behind each BMC is a machine that network-boots from the agent's TFTP
# server (started in part 2 on this port) and a host that echoes its serial
# console.
TFTP_PORT="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$BIN" sim --ipmi 127.0.0.1:21000 --redfish 127.0.0.1:8124 --count 1000 --password-file "$WORK/pw" \
    --power-delay-ms 200 --stats-file "$WORK/sim-stats.json" --sol-echo \
    --boot-server "127.0.0.1:$TFTP_PORT" --heartbeat-interval 1 >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_http http://127.0.0.1:8124/redfish/v1/
FLEET=("$BIN" ipmi -H '127.0.0.1:[21000-21999]' -U admin -f "$WORK/pw")
run "${FLEET[@]}" power on | tail -n 1
sleep 0.5
run "${FLEET[@]}" --repeat 3 power status | tail -n 2
run "$BIN" ipmi -H 127.0.0.1:21999 -U admin -f "$WORK/pw" -C 3 power nmi
RS=("$BIN" redfish --url http://127.0.0.1:8124 -U admin -f "$WORK/pw")
run "${RS[@]}" --system sys-0042 vmedia insert http://127.0.0.1:8080/deploy.iso
run "${RS[@]}" --system sys-0042 vmedia status
run "${RS[@]}" --system 'sys-[0000-0999]' --repeat 3 power status | tail -n 2

step "sushy-emulator --fake on 127.0.0.1:8123 (Redfish, basic auth; power lands 1-11 s later)"
SUSHY_UUID=2b6e6d2c-0000-4000-8000-0000000000d1
# bcrypt htpasswd, the password read from stdin (-i), cost 4: checked on every request.
htpasswd -B -C 4 -i -c "$WORK/htpasswd" admin <"$WORK/pw" 2>/dev/null
cat >"$WORK/sushy.conf" <<CONF
SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = 8123
SUSHY_EMULATOR_STATE_DIR = '$WORK/sushy-state'
SUSHY_EMULATOR_AUTH_FILE = '$WORK/htpasswd'
SUSHY_EMULATOR_FAKE_SYSTEMS = [
    {'uuid': '$SUSHY_UUID', 'name': 'fake-1', 'power_state': 'Off',
     'external_notifier': False, 'nics': [{'mac': '52:54:00:00:00:01', 'ip': '192.0.2.1'}]},
]
CONF
sushy-emulator --fake --config "$WORK/sushy.conf" </dev/null >"$WORK/sushy.log" 2>&1 &
PIDS+=($!)
wait_http http://127.0.0.1:8123/redfish/v1/
RF=("$BIN" redfish --url http://127.0.0.1:8123 -U admin -f "$WORK/pw")
run "${RF[@]}" power status
run "${RF[@]}" --json bootdev get
run "${RF[@]}" bootdev supported

step "ipmitool as a client of the simulator"
run ipmitool -I lanplus -H 127.0.0.1 -p 21042 -U admin -f "$WORK/pw" -C 17 chassis power status

part "2. The agent: ironrack serve, driven by the stock baremetal CLI and by the Nova-side driver"

step "config and start"
API_PORT="$(free_port)"
SYNC=5
cat >"$WORK/ironrack.toml" <<CONF
[api]
listen = "127.0.0.1:$API_PORT"

[store]
path = "$WORK/ironrack.db"

[conductor]
sync_power_state_interval = $SYNC
power_poll_interval = 0.5
deploy_callback_timeout = 120
clean_callback_timeout = 120
check_provision_state_interval = 2

[tftp]
listen = "127.0.0.1:$TFTP_PORT"
root = "$WORK/tftproot"

[http_boot]
listen = "127.0.0.1:0"

[boot]
default_boot_mode = "bios"

[console]
log_dir = "$WORK/console-logs"
CONF
# The deploy "ramdisk" the simulated machines download: any files will do.
mkdir -p "$WORK/tftproot/deploy"
head -c 4194304 /dev/urandom >"$WORK/tftproot/deploy/vmlinuz"
head -c 16777216 /dev/urandom >"$WORK/tftproot/deploy/initrd.img"
run cat "$WORK/ironrack.toml"
printf '$ ironrack serve --config %s 2>%s &\n' "$WORK/ironrack.toml" "$WORK/agent.log"
"$BIN" serve --config "$WORK/ironrack.toml" </dev/null >/dev/null 2>"$WORK/agent.log" &
AGENT_PID=$!
API=""
for _ in $(seq 1 300); do
    line="$(grep -m1 '^ironrack: API listening on ' "$WORK/agent.log" || true)"
    if [[ -n "$line" ]]; then
        API="${line#ironrack: API listening on }"
        break
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$WORK/agent.log" >&2; die "ironrack serve exited"; }
    sleep 0.1
done
[[ -n "$API" ]] || die "ironrack serve did not listen within 30 s"
echo "$line"

# Sessions the first simulated BMC has seen so far (the stats file is
# rewritten every second), to count the agent's own below.
sessions_opened() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ipmi"][0]["stats"]["sessions_opened"])' \
        "$WORK/sim-stats.json"
}
sleep 1.1
SESSIONS_BEFORE="$(sessions_opened)"

BM=(baremetal --os-endpoint "$API" --os-auth-type none)
bm() { run "${BM[@]}" "$@"; }
# `baremetal node show NODE -f value -c FIELD`, quietly.
field() { "${BM[@]}" node show "$1" -f value -c "$2"; }

# Wait until the node's target_power_state clears; check the outcome.
settle() { # NODE WANT
    local node="$1" want="$2" t=$SECONDS tgt ps err
    while :; do
        tgt="$(field "$node" target_power_state)"
        [[ "$tgt" == None ]] && break
        ((SECONDS - t < 90)) || die "$node: target_power_state still '$tgt' after 90 s"
        sleep 0.3
    done
    { read -r ps; read -r err; } < <("${BM[@]}" node show "$node" -f json -c power_state -c last_error |
        python3 -c 'import json, sys; n = json.load(sys.stdin); print(n["power_state"]); print(n["last_error"])')
    printf '   -> %s: power_state=%s (target cleared within %d s)\n' "$node" "$ps" $((SECONDS - t))
    [[ "$ps" == "$want" && "$err" == None ]] || die "$node: expected '$want', got '$ps', last_error: $err"
}

step "enroll: one node on ipmi_sim, one on sushy-emulator, three on ironrack sim"
# The stock CLI takes driver_info on its command line; the agent seals the
# passwords in its store and never shows them again.
bm node create --name ipmisim-1 --driver ipmi -f value -c uuid \
    --driver-info ipmi_address=127.0.0.1 --driver-info ipmi_port=9623 \
    --driver-info ipmi_username=admin --driver-info ipmi_password="$PW" \
    --driver-info hw_profile=ipmi-sim
bm node create --name sushy-1 --driver redfish -f value -c uuid \
    --driver-info redfish_address=http://127.0.0.1:8123 \
    --driver-info redfish_system_id=/redfish/v1/Systems/$SUSHY_UUID \
    --driver-info redfish_username=admin --driver-info redfish_password="$PW"
for i in 0 1 2; do
    bm node create --name sim-$i --driver ipmi -f value -c uuid \
        --driver-info ipmi_address=127.0.0.1 --driver-info ipmi_port=$((21000 + i)) \
        --driver-info ipmi_username=admin --driver-info ipmi_password="$PW" \
        --driver-info ipmi_cipher_suite=17
done
# Each simulated machine's PXE MAC is in the simulator's stats file.
sim_mac() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ipmi"][int(sys.argv[2])]["mac"])' "$WORK/sim-stats.json" "$1"; }
bm port create "$(sim_mac 0)" --node "$(field sim-0 uuid)" -f value -c uuid
bm port create "$(sim_mac 1)" --node "$(field sim-1 uuid)" -f value -c uuid
bm port list --node sim-0 --fields uuid address node_uuid pxe_enabled
t=$SECONDS # until the agent has read every BMC once
while "${BM[@]}" node list -f value -c power_state | grep -qx None; do
    ((SECONDS - t < 2 * SYNC + 10)) || die "some nodes still have no power state"
    sleep 0.5
done
bm node list
bm node show ipmisim-1 --fields uuid name power_state driver_info
bm node show sushy-1 --fields uuid name power_state driver_info

step "power through the agent: on, off, reboot, soft off (each node's own BMC, waiting until target_power_state clears)"
for node in ipmisim-1 sushy-1 sim-0; do
    bm node power on "$node"
    settle "$node" "power on"
    bm node power off "$node"
    settle "$node" "power off"
    bm node reboot "$node"
    settle "$node" "power on"
    bm node power off --soft --power-timeout 60 "$node"
    settle "$node" "power off"
done
echo "ipmi_sim's chassis_control saw: power=$(cat "$WORK/ipmi-sim/power") soft offs=$(cat "$WORK/ipmi-sim/shutdown_count" 2>/dev/null || echo '?')"

step "boot device"
for node in ipmisim-1 sushy-1 sim-0; do
    bm node boot device set "$node" pxe
    bm node boot device show "$node"
done
echo "ipmi_sim's chassis_control saw: boot=$(cat "$WORK/ipmi-sim/boot")"
echo "(sushy-emulator always reports BootSourceOverrideEnabled=Continuous, hence persistent=True)"

step "NMI: the simulator has one, ipmi_sim has not (refused, with the agent's reason)"
bm node inject nmi sim-0
if bm node inject nmi ipmisim-1; then die "ipmi_sim should refuse an NMI"; fi
sleep 1.2 # the simulator writes its stats file every second
python3 - "$WORK/sim-stats.json" "$SESSIONS_BEFORE" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))["ipmi"][0]
st = b["stats"]
print(f"simulator BMC {b['addr']} (sim-0): nmi_count={st['nmi_count']}; sessions opened by the agent: "
      f"{st['sessions_opened'] - int(sys.argv[2])} for every sync, power, boot and NMI call above")
PY

step "validate and maintenance"
bm node validate sushy-1
bm node maintenance set sim-1 --reason "rack move"
bm node show sim-1 --fields name maintenance maintenance_reason
bm node maintenance unset sim-1
bm node show sim-1 --fields name maintenance maintenance_reason

step "the Nova view: ironrack driver (what the compute driver sees and does)"
DRV=("$BIN" driver --api "$API" --retry-interval 0.5)
run "${DRV[@]}" get-info sim-1
run "${DRV[@]}" power-on sim-1
run "${DRV[@]}" power-off --timeout 30 sim-1
run "${DRV[@]}" get-info sim-1

step "console: serial-over-LAN bridged to TCP, for as many viewers as want it"
bm node console enable sim-0
t=$SECONDS
until [[ "$(field sim-0 console_enabled)" == True ]]; do
    ((SECONDS - t < 30)) || die "sim-0: console not enabled"
    sleep 0.3
done
bm node console show sim-0
URL="$("${BM[@]}" node console show sim-0 -f json | python3 -c 'import json, sys; print(json.load(sys.stdin)["console_info"]["url"])')"
python3 - "$URL" <<'PY'
import socket, sys, time
host, port = sys.argv[1].removeprefix("tcp://").rsplit(":", 1)
a = socket.create_connection((host, int(port)), timeout=10)
b = socket.create_connection((host, int(port)), timeout=10)
time.sleep(0.5)
a.recv(4096); b.recv(4096)  # greetings: writer / read-only
a.sendall(b"hello from the demo\r")
seen = b""
deadline = time.time() + 10
while b"hello from the demo" not in seen and time.time() < deadline:
    seen += b.recv(4096)
print("a second, read-only viewer saw the host echo:", b"hello from the demo" in seen)
PY
bm node console disable sim-0

step "provisioning: deploy and undeploy sim-0, a simulated machine that really PXE boots from the agent"
for node in sim-0 sim-1; do
    bm node set "$node" --driver-info deploy_kernel=deploy/vmlinuz --driver-info deploy_ramdisk=deploy/initrd.img
done
# Wait until the node is in STATE with no worker holding it.
provisioned() { # NODE STATE
    local node="$1" want="$2" t=$SECONDS st
    while :; do
        st="$("${BM[@]}" node show "$node" -f value -c provision_state)"
        [[ "$st" == "$want" && "$(field "$node" reservation)" == None ]] && break
        [[ "$st" == *failed ]] && die "$node: $st: $(field "$node" last_error)"
        ((SECONDS - t < 120)) || die "$node: still '$st' after 120 s"
        sleep 0.5
    done
    printf '   -> %s: %s after %d s\n' "$node" "$want" $((SECONDS - t))
}
for node in sim-0 sim-1; do
    bm node manage "$node"
    provisioned "$node" manageable
    bm node provide "$node" # cleaning: the ramdisk boots and heartbeats
    provisioned "$node" available
done
bm node set sim-0 --instance-info image_source=http://images.example/ubuntu.qcow2 \
    --instance-uuid 0b3ec1f4-7d0e-4c1a-9d55-5a1e0c0de001
bm node deploy sim-0
provisioned sim-0 active
bm node show sim-0 --fields name provision_state power_state instance_uuid driver_internal_info
sleep 1.2
python3 - "$WORK/sim-stats.json" <<'PY'
import json, sys
n = json.load(open(sys.argv[1]))["ipmi"][0]["stats"]["netboot"]
print(f"sim-0's machine: {n['netboots']} network boots, {n['tftp_files']} files / {n['tftp_bytes']} bytes over TFTP, "
      f"{n['heartbeats_accepted']} heartbeats accepted, now: {n['state']}")
PY
bm node undeploy sim-0
provisioned sim-0 available

step "the Nova view of provisioning: ironrack driver spawn / destroy on sim-1"
run "${DRV[@]}" spawn sim-1 --instance-uuid 0b3ec1f4-7d0e-4c1a-9d55-5a1e0c0de002 \
    --image-source http://images.example/ubuntu.qcow2 --vif port-a
run "${DRV[@]}" destroy sim-1 --instance-uuid 0b3ec1f4-7d0e-4c1a-9d55-5a1e0c0de002
provisioned sim-1 available

step "a change behind the agent's back shows up after the power sync (every ${SYNC} s)"
bm node power off sim-2
settle sim-2 "power off"
run ipmitool -I lanplus -H 127.0.0.1 -p 21002 -U admin -f "$WORK/pw" -C 17 chassis power on
t=$SECONDS
until [[ "$(field sim-2 power_state)" == "power on" ]]; do
    ((SECONDS - t < 3 * SYNC + 10)) || die "sim-2: the power sync never saw the change"
    sleep 0.5
done
bm node show sim-2 --fields name power_state target_power_state last_error
echo "(seen by the agent within $((SECONDS - t)) s; its log says:)"
grep "During sync_power_state, node $(field sim-2 uuid)" "$WORK/agent.log" | tail -n 1 | sed 's/^[^ ]* *//'

step "metrics"
printf '$ curl -s %s/metrics | grep ^ironrack_ | grep -v _bucket\n' "$API"
curl -fsS "$API/metrics" >"$WORK/metrics"
grep '^ironrack_' "$WORK/metrics" | grep -v '_bucket' || die "no ironrack_ metrics"

step "secrets at rest"
run ls -l "$WORK"/ironrack.db*
echo "store: $WORK/ironrack.db; key file: $WORK/ironrack.db.key, mode $(stat -c %a "$WORK/ironrack.db.key")"
python3 - "$WORK/ironrack.db" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
name, info = db.execute("SELECT name, driver_info FROM nodes WHERE name = 'sim-0'").fetchone()
print(f"driver_info of {name} as stored: ipmi_password = {json.loads(info)['ipmi_password']}")
PY
for f in "$WORK"/ironrack.db "$WORK"/ironrack.db-wal "$WORK/agent.log"; do
    [[ -e "$f" ]] || continue
    n="$(grep -a -c -F -- "$PW" "$f" || true)"
    echo "the password in clear in $(basename "$f"): $n times"
    [[ "$n" == 0 ]] || die "the password is in clear in $f"
done

step "stop the agent (SIGTERM)"
kill -TERM "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
AGENT_PID=""
echo "ironrack serve exited with status $rc; last log line: $(tail -n 1 "$WORK/agent.log" | sed 's/^[^ ]* *//')"
[[ $rc == 0 ]] || die "the agent did not stop cleanly"

echo
echo "demo done in $((SECONDS - T0)) s"
