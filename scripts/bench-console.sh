#!/usr/bin/env bash
# Console keystroke round trip (viewer -> BMC -> host echo -> viewer) through
# the agent's console bridge, against a direct `ipmitool -I lanplus ... sol
# activate` session on the same simulated BMCs, with 1 and with COUNT
# consoles open (one typing, then all typing at once, one keystroke in flight
# each). Prints p50 / p99 for each and the ratio ours / ipmitool as a
# markdown table.
# Not a test: nothing here asserts a time.
#
#   scripts/bench-console.sh
#   COUNT=20 ROUNDS_ONE=200 ROUNDS_MANY=20 scripts/bench-console.sh
#
# Builds with cargo --release (honours CARGO_TARGET_DIR), starts `ironrack
# sim --sol-echo` with COUNT BMCs and `ironrack serve` (power sync off, so
# only the consoles talk to the BMCs) on free loopback ports, and removes
# everything on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT="${COUNT:-100}"
ROUNDS_ONE="${ROUNDS_ONE:-500}"
ROUNDS_MANY="${ROUNDS_MANY:-50}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"

IPMITOOL="$(command -v ipmitool || true)"
[[ -n "$IPMITOOL" ]] || {
    echo "bench-console: ipmitool missing; run scripts/install-peers.sh" >&2
    exit 2
}
command -v python3 >/dev/null || {
    echo "bench-console: python3 missing" >&2
    exit 2
}

cd "$REPO"
echo "bench-console: building (release)..." >&2
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
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A first UDP port with COUNT free ones after it (the BMCs), and a first TCP
# port with 2 * COUNT free ones (the console range).
read -r SIM_BASE CON_BASE < <(python3 - "$COUNT" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])

def free(base, count, kind):
    socks = []
    try:
        for p in range(base, base + count):
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()

found = []
for kind, count in ((socket.SOCK_DGRAM, n), (socket.SOCK_STREAM, 2 * n)):
    for _ in range(200):
        base = random.randrange(20000, 32000 - count)
        if free(base, count, kind):
            found.append(base)
            break
    else:
        sys.exit(f"no {count} free consecutive ports")
print(*found)
EOF
)

printf '%s\n' "bench-console-pw" >"$WORK/pw"
chmod 600 "$WORK/pw"

"$BIN" sim --ipmi "127.0.0.1:$SIM_BASE" --count "$COUNT" --sol-echo \
    --password-file "$WORK/pw" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/agent.toml" <<EOF
[api]
listen = "127.0.0.1:0"
[store]
path = "$WORK/ironrack.db"
[conductor]
sync_power_state_interval = 0
[console]
host = "127.0.0.1"
port_range = "$CON_BASE-$((CON_BASE + 2 * COUNT - 1))"
log_dir = "$WORK/console-logs"
EOF
"$BIN" serve --config "$WORK/agent.toml" 2>"$WORK/agent.log" &
PIDS+=($!)

wait_for() { # file pattern what
    for _ in $(seq 600); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench-console: $3 did not start:" >&2
    cat "$1" >&2
    exit 1
}
wait_for "$WORK/sim.log" "IPMI BMC(s) on" "ironrack sim"
wait_for "$WORK/agent.log" "API listening on http://" "ironrack serve"
API="$(grep -o 'API listening on http://[0-9.:]*' "$WORK/agent.log" | head -1 | sed 's/.* on //')"
echo "bench-console: $COUNT BMCs from udp/$SIM_BASE, agent at $API, consoles from tcp/$CON_BASE" >&2

python3 "$REPO/scripts/bench-console.py" --api "$API" --sim-base "$SIM_BASE" \
    --count "$COUNT" --pwfile "$WORK/pw" --ipmitool "$IPMITOOL" \
    --rounds-one "$ROUNDS_ONE" --rounds-many "$ROUNDS_MANY"
