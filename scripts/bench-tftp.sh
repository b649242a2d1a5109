#!/usr/bin/env bash
# TFTP throughput on loopback, measured in one run against the peers:
#   1. tftpd-hpa's in.tftpd (lock step only: it has no windowsize);
#   2. the async-tftp 0.4.2 server (bench/async-tftp-server, RFC 7440 too);
#   3. `ironrack tftp serve`.
# One client drives all three, `ironrack tftp bench` (N concurrent fetches of
# the same file, data discarded, sizes checked against tsize), so the client's
# cost is the same everywhere. Each cell is the median of REPEAT runs of
# aggregate MB/s (10^6 bytes per second); ratios are against in.tftpd at the
# same client count, lock step. Not a test: nothing here asserts a time.
#
#   scripts/bench-tftp.sh                        # 64 MiB, 1 and 32 clients, blksize 1468, windowsize 16
#   SIZE_MB=16 CLIENTS=8 REPEAT=1 scripts/bench-tftp.sh
#
# in.tftpd chroots into the root (-s), so run this as root (CI and the dev
# container do). Knobs: SIZE_MB, CLIENTS, BLKSIZE, WINDOW, REPEAT, PORT (first
# of three consecutive ports), ASYNC_TFTP_TARGET_DIR (where the async-tftp
# server is built).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE_MB="${SIZE_MB:-64}"
CLIENTS="${CLIENTS:-32}"
BLKSIZE="${BLKSIZE:-1468}"
WINDOW="${WINDOW:-16}"
REPEAT="${REPEAT:-3}"
PORT="${PORT:-26900}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
ASYNC_TARGET="${ASYNC_TFTP_TARGET_DIR:-$TARGET/async-tftp-server}"

TFTPD="$(command -v in.tftpd || echo /usr/sbin/in.tftpd)"
[[ -x "$TFTPD" ]] || {
    echo "bench-tftp: in.tftpd missing; run scripts/install-peers.sh" >&2
    exit 2
}
command -v python3 >/dev/null || {
    echo "bench-tftp: python3 missing" >&2
    exit 2
}

cd "$REPO"
echo "bench-tftp: building (release)..." >&2
cargo build --release --locked -q
(cd bench/async-tftp-server && CARGO_TARGET_DIR="$ASYNC_TARGET" cargo build --release --locked -q)
BIN="$TARGET/release/ironrack"
ASYNC_BIN="$ASYNC_TARGET/release/async-tftp-server"

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

# in.tftpd drops to nobody (or the -u user) after chroot: the root must be
# readable by it.
chmod 755 "$WORK"
mkdir "$WORK/root"
chmod 755 "$WORK/root"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom >"$WORK/root/bench.bin"
echo hello >"$WORK/root/ready.txt"
chmod 644 "$WORK/root/"*
# Warm the page cache for everybody.
cat "$WORK/root/bench.bin" >/dev/null

HPA_PORT="$PORT"
ASYNC_PORT="$((PORT + 1))"
IR_PORT="$((PORT + 2))"

if [[ "$(id -u)" -eq 0 ]]; then
    TFTPD_USER=nobody
else
    TFTPD_USER="$(id -un)"
fi
"$TFTPD" -L -a "127.0.0.1:$HPA_PORT" -s "$WORK/root" -u "$TFTPD_USER" -B 65464 \
    >"$WORK/hpa.log" 2>&1 &
PIDS+=($!)
"$ASYNC_BIN" "$WORK/root" "127.0.0.1:$ASYNC_PORT" 65464 64 >"$WORK/async.log" 2>&1 &
PIDS+=($!)
"$BIN" tftp serve --root "$WORK/root" --listen "127.0.0.1:$IR_PORT" \
    --max-blksize 1468 --max-windowsize 64 --max-transfers 1024 >"$WORK/ironrack.log" 2>&1 &
PIDS+=($!)

for port in "$HPA_PORT" "$ASYNC_PORT" "$IR_PORT"; do
    ok=""
    for _ in $(seq 1 100); do
        if "$BIN" tftp get "127.0.0.1:$port" ready.txt -o "$WORK/ready.out" --timeout 0.2 --retries 1 \
            >/dev/null 2>&1; then
            ok=1
            break
        fi
        sleep 0.1
    done
    [[ -n "$ok" ]] || {
        echo "bench-tftp: no server on port $port" >&2
        cat "$WORK"/*.log >&2
        exit 1
    }
done

# One run: MB/s of `ironrack tftp bench` (PORT CLIENTS [WINDOW]), "nan" on failure.
bench_once() {
    local port="$1" clients="$2" window="${3:-}"
    local args=(tftp bench "127.0.0.1:$port" bench.bin --clients "$clients" --blksize "$BLKSIZE")
    [[ -n "$window" ]] && args+=(--windowsize "$window")
    local out
    if ! out="$(cd "$WORK" && "$BIN" "${args[@]}" 2>"$WORK/bench.err")"; then
        echo "bench-tftp: ${args[*]} failed: $out $(cat "$WORK/bench.err")" >&2
        echo "nan"
        return
    fi
    python3 -c 'import json,sys; print(json.loads(sys.argv[1])["mb_per_s"])' "$out"
}

median() {
    python3 -c 'import math,statistics,sys; v=[float(x) for x in sys.argv[1:]]; v=[x for x in v if not math.isnan(x)]; print("%.1f" % statistics.median(v) if v else "nan")' "$@"
}

ratio() {
    python3 -c 'import sys,math; a,b=float(sys.argv[1]),float(sys.argv[2]); print("-" if math.isnan(a) or math.isnan(b) or b==0 else "%.2fx" % (a/b))' "$1" "$2"
}

echo "bench-tftp: ${SIZE_MB} MiB file, blksize $BLKSIZE, median of $REPEAT, $(nproc) CPUs" >&2
# Every cell once per round, rounds repeated, so load from elsewhere on the
# machine falls on all servers alike.
CELLS=()
for c in 1 "$CLIENTS"; do
    CELLS+=("hpa $HPA_PORT $c" "async $ASYNC_PORT $c" "ir $IR_PORT $c"
        "async_w $ASYNC_PORT $c $WINDOW" "ir_w $IR_PORT $c $WINDOW")
done
declare -A RUNS
for r in $(seq 1 "$REPEAT"); do
    echo "bench-tftp: round $r of $REPEAT..." >&2
    for cell in "${CELLS[@]}"; do
        read -r name port c w <<<"$cell"
        RUNS[$name,$c]+=" $(bench_once "$port" "$c" "$w")"
    done
done
declare -A R
for key in "${!RUNS[@]}"; do
    # shellcheck disable=SC2086
    R[$key]="$(median ${RUNS[$key]})"
done

echo
echo "| clients | mode | in.tftpd MB/s | async-tftp MB/s | ironrack MB/s | async-tftp / in.tftpd | ironrack / in.tftpd |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for c in 1 "$CLIENTS"; do
    h="${R[hpa,$c]}"
    echo "| $c | lock step | $h | ${R[async,$c]} | ${R[ir,$c]} | $(ratio "${R[async,$c]}" "$h") | $(ratio "${R[ir,$c]}" "$h") |"
    echo "| $c | windowsize $WINDOW | (lock step) | ${R[async_w,$c]} | ${R[ir_w,$c]} | $(ratio "${R[async_w,$c]}" "$h") | $(ratio "${R[ir_w,$c]}" "$h") |"
done
