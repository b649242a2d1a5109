#!/usr/bin/env bash
# Run an OpenIPMI ipmi_sim BMC for ironrack tests, in the foreground.
#
#   scripts/start-ipmi-sim.sh STATE_DIR UDP_PORT [SOL_TCP_PORT]
#
# Renders tests/fixtures/ipmi_sim/{lan.conf.in,sim.emu.in} into STATE_DIR,
# initialises the chassis state files and then exec()s
#
#   ipmi_sim -n -p -c STATE_DIR/lan.conf -f STATE_DIR/sim.emu -s STATE_DIR </dev/null
#
# so the caller's child PID *is* ipmi_sim (kill it with SIGTERM).
# ipmi_sim listens on 127.0.0.1:UDP_PORT only (IPMI 1.5 + RMCP+ 2.0,
# cipher suites 0..14 incl. 3; no 17), one user with ADMIN privilege.
# With SOL_TCP_PORT, SOL instance 1 is wired to telnet:127.0.0.1:SOL_TCP_PORT
# (ipmi_sim connects *out* to that port when it starts, and retries every 10 s
# until something listens there: start the listener first).
#
# Credentials (never passed on a command line):
#   IRONRACK_IPMI_SIM_PASSWORD_FILE  file whose first line is the password
#   IRONRACK_IPMI_SIM_PASSWORD       the password itself (if no _FILE)
#   IRONRACK_IPMI_SIM_USER           user name (default: admin)
# The password must be 1..19 printable ASCII chars without whitespace or
# quotes (ipmi_sim's lan.conf parser silently truncates to 19 bytes and splits
# on whitespace).  It is copied to STATE_DIR/password (0600) for `ipmitool -f`.
#
# Other knobs:
#   IRONRACK_IPMI_SIM_INITIAL_POWER  on|off (default off), only used when
#                                    STATE_DIR/power does not exist yet
#   IRONRACK_IPMI_SIM_INITIAL_BOOT   none|pxe|default|cdrom|bios (default
#                                    none), only when STATE_DIR/boot is absent
#   IRONRACK_IPMI_SIM_PERSIST=1      keep ipmi_sim's own persistence (users,
#                                    LAN/SOL params, SEL) under STATE_DIR;
#                                    default is -p (nopersist) so every start
#                                    uses exactly the rendered lan.conf
#   IRONRACK_IPMI_SIM_BIN            ipmi_sim binary (default: ipmi_sim)
#
# See tests/fixtures/ipmi_sim/README.md for the state-file format.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FIXTURES="${REPO_ROOT}/tests/fixtures/ipmi_sim"

die() { printf 'start-ipmi-sim: ERROR: %s\n' "$*" >&2; exit 2; }

[[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 STATE_DIR UDP_PORT [SOL_TCP_PORT]"

is_port() { [[ "$1" =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }

STATE_DIR_ARG="$1"
UDP_PORT="$2"
SOL_PORT="${3:-}"
is_port "$UDP_PORT" || die "invalid UDP port: $UDP_PORT"
UDP_PORT=$((10#$UDP_PORT))
if [[ -n "$SOL_PORT" ]]; then
    is_port "$SOL_PORT" || die "invalid SOL TCP port: $SOL_PORT"
    SOL_PORT=$((10#$SOL_PORT))
fi

# ipmi_sim sets SO_REUSEADDR on its UDP socket, so a second instance on the
# same port starts "fine" and silently steals the first one's datagrams.
# Refuse to start if anything is bound there already (a plain bind without
# SO_REUSEADDR fails with EADDRINUSE in that case).
if ! python3 - "$UDP_PORT" <<'PYEOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    sys.exit(str(e))
PYEOF
then
    die "UDP port 127.0.0.1:$UDP_PORT is already in use"
fi

mkdir -p -- "$STATE_DIR_ARG"
STATE_DIR="$(cd -- "$STATE_DIR_ARG" && pwd -P)"
CHASSIS_CONTROL="${FIXTURES}/chassis_control"
[[ -x "$CHASSIS_CONTROL" ]] || die "$CHASSIS_CONTROL missing or not executable"

# The paths end up single-quoted inside a double-quoted lan.conf string and
# are then run through /bin/sh by ipmi_sim.
BAD_PATH_RE=$'[\'"\\\\\n]'
for p in "$STATE_DIR" "$CHASSIS_CONTROL"; do
    [[ ! "$p" =~ $BAD_PATH_RE ]] || die "path must not contain quotes, backslashes or newlines: $p"
done

# ---- credentials ------------------------------------------------------------
IPMI_USER="${IRONRACK_IPMI_SIM_USER:-admin}"
if [[ -n "${IRONRACK_IPMI_SIM_PASSWORD_FILE:-}" ]]; then
    [[ -r "$IRONRACK_IPMI_SIM_PASSWORD_FILE" ]] \
        || die "cannot read IRONRACK_IPMI_SIM_PASSWORD_FILE=$IRONRACK_IPMI_SIM_PASSWORD_FILE"
    IFS= read -r PASSWORD <"$IRONRACK_IPMI_SIM_PASSWORD_FILE" || true
    PASSWORD="${PASSWORD%$'\r'}"
elif [[ -n "${IRONRACK_IPMI_SIM_PASSWORD:-}" ]]; then
    PASSWORD="$IRONRACK_IPMI_SIM_PASSWORD"
else
    die "set IRONRACK_IPMI_SIM_PASSWORD_FILE or IRONRACK_IPMI_SIM_PASSWORD"
fi
unset IRONRACK_IPMI_SIM_PASSWORD

LC_ALL=C
PASSWORD_RE='^[!#-&(-~]{1,19}$'   # 0x21..0x7e minus " and '
[[ "$PASSWORD" =~ $PASSWORD_RE ]] \
    || die "password must be 1..19 printable ASCII chars, no whitespace/quotes"
[[ "$IPMI_USER" =~ ^[A-Za-z0-9._-]{1,15}$ ]] \
    || die "user name must be 1..15 chars of [A-Za-z0-9._-]"

# ---- render config ----------------------------------------------------------
umask 077

KNOWN_PLACEHOLDERS=" @UDP_PORT@ @USER@ @PASSWORD@ @CHASSIS_CONTROL_CMD@ @SOL_LINE@ @STATE_DIR@ "

render() { # template output
    local t ph
    t="$(<"$1")"
    # refuse templates with placeholders we do not know how to fill
    while read -r ph; do
        [[ -z "$ph" || "$KNOWN_PLACEHOLDERS" == *" $ph "* ]] || die "unknown placeholder $ph in $1"
    done < <(grep -o '@[A-Z_]*@' "$1" || true)
    t="${t//@UDP_PORT@/"$UDP_PORT"}"
    t="${t//@USER@/"$IPMI_USER"}"
    t="${t//@PASSWORD@/"$PASSWORD"}"
    t="${t//@CHASSIS_CONTROL_CMD@/"'$CHASSIS_CONTROL' '$STATE_DIR' 0x20"}"
    t="${t//@SOL_LINE@/"$SOL_LINE"}"
    t="${t//@STATE_DIR@/"$STATE_DIR"}"
    printf '%s\n' "$t" >"$2.tmp"
    mv -f "$2.tmp" "$2"
}

if [[ -n "$SOL_PORT" ]]; then
    SOL_LINE="  sol \"telnet:127.0.0.1:${SOL_PORT}\" 115200"
else
    SOL_LINE="  # (no SOL: start-ipmi-sim.sh called without SOL_TCP_PORT)"
fi

render "$FIXTURES/lan.conf.in" "$STATE_DIR/lan.conf"
render "$FIXTURES/sim.emu.in" "$STATE_DIR/sim.emu"
printf '%s\n' "$PASSWORD" >"$STATE_DIR/password.tmp"
mv -f "$STATE_DIR/password.tmp" "$STATE_DIR/password"
unset PASSWORD

# ---- chassis state ----------------------------------------------------------
umask 022
init_state() { # file value
    [[ -f "$STATE_DIR/$1" ]] || printf '%s\n' "$2" >"$STATE_DIR/$1"
}
case "${IRONRACK_IPMI_SIM_INITIAL_POWER:-off}" in
    on | off) init_state power "${IRONRACK_IPMI_SIM_INITIAL_POWER:-off}" ;;
    *) die "IRONRACK_IPMI_SIM_INITIAL_POWER must be on or off" ;;
esac
case "${IRONRACK_IPMI_SIM_INITIAL_BOOT:-none}" in
    none | pxe | default | cdrom | bios) init_state boot "${IRONRACK_IPMI_SIM_INITIAL_BOOT:-none}" ;;
    *) die "IRONRACK_IPMI_SIM_INITIAL_BOOT must be none|pxe|default|cdrom|bios" ;;
esac
touch "$STATE_DIR/chassis.log"

# ---- run --------------------------------------------------------------------
PERSIST_FLAG=(-p)
[[ "${IRONRACK_IPMI_SIM_PERSIST:-0}" == "1" ]] && PERSIST_FLAG=()

IPMI_SIM_BIN="${IRONRACK_IPMI_SIM_BIN:-ipmi_sim}"
command -v "$IPMI_SIM_BIN" >/dev/null 2>&1 || die "$IPMI_SIM_BIN not found (run scripts/install-peers.sh)"

printf 'start-ipmi-sim: pid %d: ipmi_sim on udp 127.0.0.1:%d%s, state %s\n' \
    "$$" "$UDP_PORT" "${SOL_PORT:+, SOL -> telnet 127.0.0.1:$SOL_PORT}" "$STATE_DIR" >&2

cd "$STATE_DIR"
# -n: no stdin/stdout console (ipmi_sim never daemonizes by itself)
exec "$IPMI_SIM_BIN" -n "${PERSIST_FLAG[@]}" \
    -c "$STATE_DIR/lan.conf" -f "$STATE_DIR/sim.emu" -s "$STATE_DIR" </dev/null
