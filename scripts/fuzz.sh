#!/usr/bin/env bash
# Run the cargo-fuzz targets in fuzz/ (see fuzz/README.md).
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]   each target MINUTES (default 10) on its corpus
#   scripts/fuzz.sh --ci                    every target 30 s on the checked-in corpus; exit 1 on any crash
#   scripts/fuzz.sh --merge [MINUTES] [TARGET...]
#                                           also merge what the runs found into fuzz/corpus/<target>
#   scripts/fuzz.sh --list                  the targets
#
# New inputs go to fuzz/target/scratch/<target>, not to the checked-in corpus
# (unless --merge). Crashes are written to fuzz/artifacts/<target>/ and make
# the script exit 1. At the end a table gives executions and crashes per
# target (libFuzzer's -print_final_stats).
#
# Environment:
#   FUZZ_SECONDS=N     seconds per target (overrides MINUTES; --ci means 30)
#   FUZZ_PARALLEL=N    targets run at once (default 1; with --ci, one per CPU)
#   FUZZ_RSS_MB=N      libFuzzer -rss_limit_mb (default 2048)
#   FUZZ_TIMEOUT=N     seconds one input may take before it counts as a hang (default 25)
#   FUZZ_NICE=N        niceness of the fuzzers (default 10)
#
# Only the stable toolchain is needed: cargo fuzz runs with RUSTC_BOOTSTRAP=1
# (it asks for -Zsanitizer=address). cargo-fuzz is installed if missing.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$REPO/fuzz"
cd "$FUZZ"

log() { printf '[fuzz] %s\n' "$*" >&2; }

ci=0
merge=0
list=0
args=()
for a in "$@"; do
    case "$a" in
        --ci) ci=1 ;;
        --merge) merge=1 ;;
        --list) list=1 ;;
        -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) args+=("$a") ;;
    esac
done

all_targets() {
    grep -A1 '^\[\[bin\]\]' Cargo.toml | sed -n 's/^name = "\(.*\)"$/\1/p'
}
if [[ $list == 1 ]]; then
    all_targets
    exit 0
fi

minutes=10
if [[ ${#args[@]} -gt 0 && ${args[0]} =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    minutes="${args[0]}"
    args=("${args[@]:1}")
fi
if [[ $ci == 1 ]]; then
    seconds="${FUZZ_SECONDS:-30}"
elif [[ -n "${FUZZ_SECONDS:-}" ]]; then
    seconds="$FUZZ_SECONDS"
else
    seconds="$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')"
fi
if [[ ${#args[@]} -gt 0 ]]; then
    targets=("${args[@]}")
else
    mapfile -t targets < <(all_targets)
fi
for t in "${targets[@]}"; do
    [[ -f "fuzz_targets/$t.rs" ]] || { log "unknown target $t (scripts/fuzz.sh --list)"; exit 2; }
done

# cargo-fuzz, on the stable toolchain.
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    # The version scripts/install-peers.sh pins.
    v="$(sed -n 's/^CARGO_FUZZ_VERSION=//p' "$REPO/scripts/install-peers.sh")"
    log "installing cargo-fuzz ${v}"
    cargo install cargo-fuzz --version "$v" --locked
fi
export RUSTC_BOOTSTRAP=1
toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^stable'; then
    toolchain=(+stable)
fi

# cargo fuzz has no --locked: check first that fuzz/Cargo.lock needs no
# change, so the targets build from the versions checked in.
host="$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')"
cargo "${toolchain[@]}" fetch --locked --target "$host"
# All targets in one cargo run: they share the instrumented ironrack build.
log "building the fuzz targets (release, ASan, debug assertions)"
cargo "${toolchain[@]}" fuzz build -O -a
bin_dir="$FUZZ/target/$host/release"

logs="$FUZZ/target/logs"
mkdir -p "$logs"
if [[ $ci == 1 ]]; then
    parallel="${FUZZ_PARALLEL:-$(nproc 2>/dev/null || echo 1)}"
else
    parallel="${FUZZ_PARALLEL:-1}"
fi
rss="${FUZZ_RSS_MB:-2048}"
hang="${FUZZ_TIMEOUT:-25}"
niceness="${FUZZ_NICE:-10}"
# As cargo fuzz runs them: the bundled SQLite is linked twice (rusqlite's C
# and its Rust symbols), which ASan's ODR check reports although it is fine.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

run_one() {
    local t="$1"
    local corpus="$FUZZ/corpus/$t" scratch="$FUZZ/target/scratch/$t" art="$FUZZ/artifacts/$t/"
    mkdir -p "$corpus" "$scratch" "$art"
    # Inputs that once crashed run first, every time.
    local extra=()
    [[ -d "$FUZZ/regressions/$t" ]] && extra=("$FUZZ/regressions/$t")
    local dict=()
    [[ -f "$FUZZ/dict/$t.dict" ]] && dict=(-dict="$FUZZ/dict/$t.dict")
    local before
    before="$(find "$art" -type f | wc -l)"
    local start=$SECONDS rc=0
    touch "$logs/$t.started"
    # New inputs go to the first directory (scratch); the corpus is read only.
    nice -n "$niceness" "$bin_dir/$t" "$scratch" "$corpus" "${extra[@]}" \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb="$rss" \
        -timeout="$hang" -artifact_prefix="$art" "${dict[@]}" \
        >"$logs/$t.log" 2>&1 || rc=$?
    local after
    after="$(find "$art" -type f | wc -l)"
    local execs
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)"
    printf '%s %s %s %s %s\n' "$t" "${execs:-0}" "$((after - before))" "$rc" "$((SECONDS - start))" \
        >"$logs/$t.result"
    if [[ $merge == 1 && $rc == 0 ]]; then
        "$bin_dir/$t" -merge=1 "$corpus" "$scratch" -rss_limit_mb="$rss" >>"$logs/$t.log" 2>&1 || true
    fi
}

log "running each target ${seconds}s, ${parallel} at a time (logs: $logs)"
running=0
for t in "${targets[@]}"; do
    rm -f "$logs/$t.result"
    run_one "$t" &
    running=$((running + 1))
    if [[ $running -ge $parallel ]]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=0
printf '\n%-14s %14s %10s %8s %8s\n' target executions exec/s crashes seconds
total_execs=0
for t in "${targets[@]}"; do
    read -r name execs crashes rc secs <"$logs/$t.result" || { name=$t execs=0 crashes=0 rc=1 secs=0; }
    rate=$(( secs > 0 ? execs / secs : 0 ))
    status=""
    if [[ $rc != 0 || $crashes != 0 ]]; then
        failed=1
        status="  FAILED (exit $rc): $(grep -m1 -E 'ERROR: libFuzzer|panicked at|ERROR: AddressSanitizer' "$logs/$t.log" || true)"
        [[ $crashes == 0 ]] && crashes=1
    fi
    total_execs=$((total_execs + execs))
    printf '%-14s %14s %10s %8s %8s%s\n' "$t" "$execs" "$rate" "$crashes" "$secs" "$status"
done
printf '%-14s %14s\n' total "$total_execs"
if [[ $failed == 1 ]]; then
    log "crash inputs are in fuzz/artifacts/<target>/; reproduce with: $bin_dir/<target> <file>"
    # A CI machine's files are gone after the run: its log keeps the inputs
    # (base64; decode with `base64 -d > fuzz/regressions/<target>/<name>`).
    for t in "${targets[@]}"; do
        while IFS= read -r -d '' f; do
            size="$(stat -c %s "$f")"
            if [[ $size -le 65536 ]]; then
                log "input $t/$(basename "$f") ($size bytes, base64): $(base64 -w0 "$f")"
            else
                log "input $t/$(basename "$f") ($size bytes, too long to print)"
            fi
        done < <(find "$FUZZ/artifacts/$t" -type f -newer "$logs/$t.started" -print0 2>/dev/null)
    done
    exit 1
fi
