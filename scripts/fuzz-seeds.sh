#!/usr/bin/env bash
# Regenerate the seed corpora under fuzz/corpus/ from real traffic (see
# fuzz/README.md for what each corpus holds):
#
#   IPMI (rmcp_decode, rakp, sim_bmc, ipmi_client, sol): the ipmitool /
#       ipmipower captures against ipmi_sim in tests/vectors/
#   redfish_json: documents and error bodies of sushy-emulator --fake
#   tftp: the requests curl, atftp and tftp-hpa send
#   api_json: the request bodies the stock `baremetal` CLI sends
#   hw_profile, netboot, boot_path: hw-profiles/*.toml, the configs the
#       agent and Ironic render, loader file names and Range headers
#
# Needs the peers of scripts/install-peers.sh (.venv with sushy-tools and
# python-ironicclient, curl, atftp, tftp). Seeds the fuzzers found later
# (added with scripts/fuzz.sh --merge) are kept unless --clean is given.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEEDS="$REPO/fuzz/seeds"
CORPUS="$REPO/fuzz/corpus"
export PATH="$REPO/.venv/bin:$PATH:/usr/sbin:/sbin"

if [[ "${1:-}" == "--clean" ]]; then
    rm -rf "$CORPUS"
fi
work="$(mktemp -d)"
cleanup() {
    if [[ -f "$work/sushy.pid" ]]; then kill "$(cat "$work/sushy.pid")" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 "$SEEDS/ipmi_seeds.py" "$REPO" "$work/out"
python3 "$SEEDS/text_seeds.py" "$REPO" "$work/out"
python3 "$SEEDS/tftp_seeds.py" "$work/out/tftp"
python3 "$SEEDS/api_seeds.py" "$REPO/.venv/bin/baremetal" "$work/out/api_json"

# sushy-emulator --fake, as tests/common/sushy.rs starts it (no auth here).
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$work/sushy-state"
cat >"$work/sushy.conf" <<CONF
SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = $port
SUSHY_EMULATOR_STATE_DIR = '$work/sushy-state'
SUSHY_EMULATOR_FAKE_SYSTEMS = [
    {'uuid': '27946b59-9e44-4fa7-8e91-f3527a1ef094', 'name': 'fake-1', 'power_state': 'Off', 'external_notifier': False, 'nics': [{'mac': '52:54:00:00:00:01', 'ip': '192.0.2.1'}]},
    {'uuid': '48295b59-9e44-4fa7-8e91-f3527a1ef095', 'name': 'fake-2', 'power_state': 'On', 'external_notifier': False, 'nics': [{'mac': '52:54:00:00:00:02', 'ip': '192.0.2.2'}]},
]
CONF
NO_COLOR=1 sushy-emulator --fake --config "$work/sushy.conf" >"$work/sushy.log" 2>&1 </dev/null &
echo $! >"$work/sushy.pid"
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/redfish/v1/" >/dev/null && break
    sleep 0.2
done
python3 "$SEEDS/redfish_seeds.py" "http://127.0.0.1:$port" "$work/out/redfish_json"

# The Redfish Task schema's example (sushy --fake has no task service).
cat >"$work/out/redfish_json/task-dmtf-example.json" <<'JSON'
{"@odata.type": "#Task.v1_4_3.Task", "Id": "545", "Name": "Task 545",
 "TaskState": "Completed", "StartTime": "2012-03-07T14:44+06:00",
 "EndTime": "2012-03-07T14:45+06:00", "TaskStatus": "OK",
 "Messages": [{"MessageId": "Base.1.0.PropertyNotWriteable", "RelatedProperties": ["SKU"],
   "Message": "The property SKU is a read only property and cannot be assigned a value",
   "MessageArgs": ["SKU"], "Severity": "Warning"}],
 "@odata.id": "/redfish/v1/TaskService/Tasks/545"}
JSON

for d in "$work/out"/*/; do
    t="$(basename "$d")"
    mkdir -p "$CORPUS/$t"
    cp "$d"* "$CORPUS/$t/"
done
du -sh "$CORPUS"
for d in "$CORPUS"/*/; do printf '%-14s %4d files\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)"; done
