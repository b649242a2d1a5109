#!/usr/bin/env bash
# Regenerate the IPMI byte vectors in tests/vectors/ from live exchanges
# between real clients (ipmitool, ipmipower) and OpenIPMI ipmi_sim.
#
#   scripts/capture-ipmi-vectors.sh [OUT_DIR]     (default: tests/vectors)
#
# Starts ipmi_sim via scripts/start-ipmi-sim.sh on a free loopback UDP port,
# puts scripts/udp-capture.py in front of it, runs each client through the
# relay and writes one capture file per exchange.  Random numbers, session IDs
# and IVs differ on every run, so regenerating rewrites every file; decode
# them with scripts/ipmi-decode-capture.py.
#
# The password is a fixed TEST password and is written into each vector's
# header on purpose (the unit tests need it to recompute the HMACs).  It is
# never put on a command line: ipmitool gets it via -f FILE, ipmipower via
# --config-file FILE.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$(mkdir -p "${1:-$REPO_ROOT/tests/vectors}" && cd "${1:-$REPO_ROOT/tests/vectors}" && pwd)"
TEST_USER="admin"
TEST_PASSWORD="ironrack-test-pw"
GUID_HEX="49524f4e5241434b2d53494d2d303031"   # from tests/fixtures/ipmi_sim/lan.conf.in

for b in ipmi_sim ipmitool ipmipower python3; do
    command -v "$b" >/dev/null 2>&1 || { echo "missing $b (run scripts/install-peers.sh)" >&2; exit 2; }
done

WORK="$(mktemp -d /tmp/ironrack-capture.XXXXXX)"
SIM_PID=""
RELAY_PID=""
cleanup() {
    if [[ -n "$RELAY_PID" ]]; then kill "$RELAY_PID" 2>/dev/null || true; fi
    if [[ -n "$SIM_PID" ]]; then
        kill "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_udp_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

umask 077
printf '%s\n' "$TEST_PASSWORD" >"$WORK/pw"
printf 'username %s\npassword %s\n' "$TEST_USER" "$TEST_PASSWORD" >"$WORK/freeipmi.conf"

SIM_PORT="$(free_udp_port)"
IRONRACK_IPMI_SIM_PASSWORD_FILE="$WORK/pw" IRONRACK_IPMI_SIM_USER="$TEST_USER" \
    "$REPO_ROOT/scripts/start-ipmi-sim.sh" "$WORK/state" "$SIM_PORT" 2>"$WORK/sim.err" &
SIM_PID=$!
"$REPO_ROOT/scripts/ipmi-sim-ready.py" "$SIM_PORT" --timeout 10 \
    || { cat "$WORK/sim.err" >&2; exit 1; }

IPMITOOL_VERSION="$(ipmitool -V 2>&1 | head -n1)"
IPMIPOWER_VERSION="$(ipmipower --version 2>&1 | head -n1)"
OPENIPMI_VERSION="$(dpkg-query -W -f='${Version}' openipmi 2>/dev/null || echo unknown)"

# capture NAME TITLE POWER_STATE DISPLAY_CMD -- CLIENT ARGV... (use @PORT@ for the relay port)
capture() {
    local name="$1" title="$2" power="$3" display="$4"
    shift 5
    local out="$OUT_DIR/$name" relay_port rc=0 argv=() a
    relay_port="$(free_udp_port)"
    for a in "$@"; do argv+=("${a//@PORT@/$relay_port}"); done

    local client_ver
    case "${display%% *}" in
        ipmitool) client_ver="$IPMITOOL_VERSION" ;;
        ipmipower) client_ver="$IPMIPOWER_VERSION" ;;
        *) client_ver="$(python3 --version 2>&1)" ;;
    esac

    printf '%s\n' "$power" >"$WORK/state/power"
    printf 'none\n' >"$WORK/state/boot"

    python3 "$REPO_ROOT/scripts/udp-capture.py" "$relay_port" "$SIM_PORT" "$out" --idle 1.5 \
        --comment "ironrack IPMI byte vector: $title" \
        --comment "server: OpenIPMI ipmi_sim $OPENIPMI_VERSION via scripts/start-ipmi-sim.sh (BMC GUID $GUID_HEX)" \
        --comment "username: $TEST_USER" \
        --comment "password: $TEST_PASSWORD" \
        --comment "client: $client_ver" \
        --comment "command: $display" \
        --comment "chassis power state before: $power" \
        --comment "format: one UDP payload per line (RMCP header onwards); C>S = client->BMC, S>C = BMC->client" \
        --comment "decode: scripts/ipmi-decode-capture.py $name" \
        2>"$WORK/relay.err" &
    RELAY_PID=$!
    for _ in $(seq 1 50); do grep -q READY "$WORK/relay.err" 2>/dev/null && break; sleep 0.1; done

    timeout 60 "${argv[@]}" >"$WORK/client.out" 2>&1 </dev/null || rc=$?
    wait "$RELAY_PID" || true
    RELAY_PID=""
    {
        echo "# client exit status: $rc"
        sed 's/^/# client output: /' "$WORK/client.out"
        echo "# chassis power state after: $(cat "$WORK/state/power")"
    } >>"$out"
    printf '%-45s rc=%d %s\n' "$name" "$rc" "$(tr '\n' ' ' <"$WORK/client.out")" >&2
}

umask 022   # vectors are committed, world-readable
PW="$WORK/pw"
CONF="$WORK/freeipmi.conf"

capture ipmitool-c3-power-status.txt \
    "ipmitool lanplus cipher suite 3, chassis power status (Get Chassis Status)" off \
    "ipmitool -I lanplus -H 127.0.0.1 -p <relay_port> -U admin -f <password_file> -C 3 chassis power status" -- \
    ipmitool -I lanplus -H 127.0.0.1 -p @PORT@ -U "$TEST_USER" -f "$PW" -C 3 chassis power status

capture ipmitool-c3-power-on.txt \
    "ipmitool lanplus cipher suite 3, chassis power on (Chassis Control 01h)" off \
    "ipmitool -I lanplus -H 127.0.0.1 -p <relay_port> -U admin -f <password_file> -C 3 chassis power on" -- \
    ipmitool -I lanplus -H 127.0.0.1 -p @PORT@ -U "$TEST_USER" -f "$PW" -C 3 chassis power on

capture ipmitool-c3-bootdev-pxe-persistent-efi.txt \
    "ipmitool lanplus cipher suite 3, chassis bootdev pxe options=persistent,efiboot (Set System Boot Options)" on \
    "ipmitool -I lanplus -H 127.0.0.1 -p <relay_port> -U admin -f <password_file> -C 3 chassis bootdev pxe options=persistent,efiboot" -- \
    ipmitool -I lanplus -H 127.0.0.1 -p @PORT@ -U "$TEST_USER" -f "$PW" -C 3 chassis bootdev pxe options=persistent,efiboot

capture ipmitool-c3-power-diag.txt \
    "ipmitool lanplus cipher suite 3, chassis power diag (Chassis Control 04h NMI, rejected by ipmi_sim with CC CCh)" on \
    "ipmitool -I lanplus -H 127.0.0.1 -p <relay_port> -U admin -f <password_file> -C 3 chassis power diag" -- \
    ipmitool -I lanplus -H 127.0.0.1 -p @PORT@ -U "$TEST_USER" -f "$PW" -C 3 chassis power diag

capture ipmipower-opensesspriv.txt \
    "ipmipower (FreeIPMI) LAN_2_0 cipher suite 3, --stat, WITH -W opensesspriv (privilege OPERATOR, default)" off \
    "ipmipower --config-file <file with username/password> -D LAN_2_0 -h 127.0.0.1:<relay_port> -I 3 -W opensesspriv --stat" -- \
    ipmipower --config-file "$CONF" -D LAN_2_0 -h "127.0.0.1:@PORT@" -I 3 -W opensesspriv --stat

capture ipmipower-no-workaround.txt \
    "ipmipower (FreeIPMI) LAN_2_0 cipher suite 3, --stat, WITHOUT workarounds (fails: privilege level cannot be obtained)" off \
    "ipmipower --config-file <file with username/password> -D LAN_2_0 -h 127.0.0.1:<relay_port> -I 3 --stat" -- \
    ipmipower --config-file "$CONF" -D LAN_2_0 -h "127.0.0.1:@PORT@" -I 3 --stat

capture ipmitool-c17-vs-ipmi-sim.txt \
    "ipmitool lanplus cipher suite 17 (RAKP-HMAC-SHA256) vs ipmi_sim: Open Session rejected, status 04h" off \
    "ipmitool -I lanplus -H 127.0.0.1 -p <relay_port> -U admin -f <password_file> -C 17 chassis power status" -- \
    ipmitool -I lanplus -H 127.0.0.1 -p @PORT@ -U "$TEST_USER" -f "$PW" -C 17 chassis power status

capture ipmitool-auto-cipher-vs-ipmi-sim.txt \
    "ipmitool lanplus without -C (1.8.19 auto-selects via Get Channel Cipher Suites in RMCP+ format, which ipmi_sim ignores)" off \
    "ipmitool -I lanplus -H 127.0.0.1 -p <relay_port> -U admin -f <password_file> chassis power status" -- \
    ipmitool -I lanplus -H 127.0.0.1 -p @PORT@ -U "$TEST_USER" -f "$PW" chassis power status

# Get Channel Cipher Suites sent by a minimal probe in both pre-session
# formats: IPMI v1.5 session-less (answered) and RMCP+ sid 0 (ignored).
cat >"$WORK/gccs-probe.py" <<'PYEOF'
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)

def ipmi_msg(seq, data):
    hdr = bytes([0x20, 0x06 << 2])
    body = bytes([0x81, seq << 2, 0x54]) + data
    c1 = (-sum(hdr)) & 0xff
    c2 = (-sum(body)) & 0xff
    return hdr + bytes([c1]) + body + bytes([c2])

def v15(msg):
    return bytes.fromhex("0600ff07") + b"\x00" + b"\x00" * 8 + bytes([len(msg)]) + msg

def rmcpp(msg):
    return bytes.fromhex("0600ff07") + b"\x06\x00" + b"\x00" * 8 + len(msg).to_bytes(2, "little") + msg

def xchg(pkt, label):
    s.sendto(pkt, ("127.0.0.1", port))
    try:
        r, _ = s.recvfrom(512)
        print(label, "->", r.hex())
        return r
    except socket.timeout:
        print(label, "-> (no reply)")
        return None

seq = 1
# list by cipher suite (byte 3 bit 7 = 1), index 0.. until a short (<16 bytes) block
for idx in range(0, 8):
    r = xchg(v15(ipmi_msg(seq, bytes([0x0e, 0x00, 0x80 | idx]))), "v1.5 GCCS idx %d" % idx)
    seq += 1
    if r is None or len(r) < 14 + 7 + 1 + 16:
        break
xchg(rmcpp(ipmi_msg(seq, bytes([0x0e, 0x00, 0x80]))), "RMCP+ sid0 GCCS idx 0")
PYEOF
capture ipmi-sim-get-channel-cipher-suites.txt \
    "Get Channel Cipher Suites (netFn 06h cmd 54h, chan 0Eh, payload IPMI, list by suite) pre-session: v1.5 session-less format (answered) then RMCP+ sid 0 format (ignored by ipmi_sim)" off \
    "python3 gccs-probe.py <relay_port>  (probe embedded in scripts/capture-ipmi-vectors.sh)" -- \
    python3 "$WORK/gccs-probe.py" @PORT@

echo "vectors written to $OUT_DIR" >&2
