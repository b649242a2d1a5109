#!/usr/bin/env bash
# Mass deploy on loopback: NODES simulated machines (ironrack sim) deployed at
# once by the agent (ironrack serve), each really booting: per-MAC config,
# kernel and a RAMDISK_MIB ramdisk over TFTP (LOADER=pxe, lock step unless
# WINDOW > 1) or over HTTP (LOADER=ipxe), then a heartbeat; the agent then
# sets disk and reboots it to `active`. Reports the time from the first
# deploy request to all-active, the bytes the machines downloaded, and the
# agent's peak RSS. Not a test: nothing here asserts a time.
#
#   scripts/bench-deploy.sh                       # 200 nodes, 64 MiB ramdisk, PXELINUX over TFTP
#   NODES=50 RAMDISK_MIB=16 LOADER=ipxe scripts/bench-deploy.sh
#
# Knobs: NODES, RAMDISK_MIB, KERNEL_MIB, LOADER (pxe|ipxe), WINDOW (TFTP
# windowsize the machines ask for), BMC_PORT (first simulated BMC), TFTP_PORT.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES="${NODES:-200}"
RAMDISK_MIB="${RAMDISK_MIB:-64}"
KERNEL_MIB="${KERNEL_MIB:-8}"
LOADER="${LOADER:-pxe}"
WINDOW="${WINDOW:-1}"
BMC_PORT="${BMC_PORT:-27000}"
TFTP_PORT="${TFTP_PORT:-26969}"
MAC_BASE="52:54:00:be:00:00"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || {
    echo "bench-deploy: $PY missing; run scripts/install-peers.sh" >&2
    exit 2
}

cd "$REPO"
echo "bench-deploy: building (release)..." >&2
cargo build --release --locked -q
BIN="$TARGET/release/ironrack"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    [[ -n "${IRONRACK_BENCH_KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/root/deploy"
head -c "$((KERNEL_MIB * 1024 * 1024))" /dev/urandom >"$WORK/root/deploy/vmlinuz"
head -c "$((RAMDISK_MIB * 1024 * 1024))" /dev/urandom >"$WORK/root/deploy/initrd.img"
cat "$WORK/root/deploy/"* >/dev/null
umask 077
echo "bench-deploy-pw" >"$WORK/pw"

cat >"$WORK/ironrack.toml" <<EOF
[api]
listen = "127.0.0.1:0"
[store]
path = "$WORK/ironrack.db"
[conductor]
workers = 400
sync_power_state_interval = 0
power_failure_recovery_interval = 0
power_poll_interval = 0.5
automated_clean = false
check_provision_state_interval = 5
[tftp]
listen = "127.0.0.1:$TFTP_PORT"
root = "$WORK/root"
max_transfers = 1024
[http_boot]
listen = "127.0.0.1:0"
root = "$WORK/root"
[boot]
default_boot_mode = "bios"
EOF

"$BIN" serve --config "$WORK/ironrack.toml" </dev/null >/dev/null 2>"$WORK/agent.log" &
AGENT=$!
PIDS+=("$AGENT")
API=""
for _ in $(seq 1 100); do
    line="$(grep -m1 '^ironrack: API listening on ' "$WORK/agent.log" || true)"
    if [[ -n "$line" ]]; then
        API="${line#ironrack: API listening on }"
        break
    fi
    sleep 0.1
done
[[ -n "$API" ]] || {
    cat "$WORK/agent.log" >&2
    exit 1
}

"$BIN" sim --ipmi "127.0.0.1:$BMC_PORT" --count "$NODES" --password-file "$WORK/pw" \
    --power-delay-ms 100 --boot-server "127.0.0.1:$TFTP_PORT" --netboot "$LOADER" \
    --tftp-windowsize "$WINDOW" --heartbeat-interval 2 --mac-base "$MAC_BASE" \
    --stats-file "$WORK/sim-stats.json" >"$WORK/sim.log" 2>&1 &
SIM=$!
PIDS+=("$SIM")
sleep 1

echo "bench-deploy: $NODES nodes, ${RAMDISK_MIB} MiB ramdisk + ${KERNEL_MIB} MiB kernel, loader $LOADER, windowsize $WINDOW" >&2
RESULT="$("$PY" "$REPO/scripts/bench-deploy.py" "$API" "$BMC_PORT" "$NODES" "$MAC_BASE" "$WORK/pw" "$AGENT")"
sleep 1.5 # the stats file is rewritten every second
"$PY" - "$RESULT" "$WORK/sim-stats.json" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
st = json.load(open(sys.argv[2]))
t = st.get("netboot_totals") or {}
tftp = t.get("tftp_bytes", 0)
http = t.get("http_bytes", 0)
total = tftp + http
secs = r["all_active_s"]
print(f"nodes                 {r['nodes']}")
print(f"requests accepted in  {r['accept_all_s']} s")
print(f"all active after      {secs} s")
print(f"downloaded            {total / 1e9:.2f} GB (TFTP {tftp / 1e9:.2f} GB, HTTP {http / 1e9:.2f} GB)")
print(f"aggregate rate        {total / 1e6 / secs:.0f} MB/s")
print(f"heartbeats accepted   {t.get('heartbeats_accepted', 0)}")
print(f"agent RSS             {r['agent_rss_before_kib'] // 1024} MiB before, peak {r['agent_peak_rss_kib'] // 1024} MiB")
EOF
