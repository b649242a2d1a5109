#!/usr/bin/env bash
# Install every peer the tests talk to (Debian packages, the pinned Python venv),
# then run the project's checks and every test. Tests never skip a missing peer.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/install-peers.sh
export PATH="$REPO/.venv/bin:$PATH:/usr/sbin:/sbin"

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

# Every test, with every scratch directory kept (tests/common/mod.rs) and
# everything the tests print captured, so that the whole run's output can be
# searched for the test passwords afterwards.
out="$(mktemp -d /tmp/ironrack-test-output.XXXXXX)"
log="$out/cargo-test.log"
export IRONRACK_TEST_OUTPUT="$out/kept"
mkdir -p "$IRONRACK_TEST_OUTPUT"
rc=0
cargo test --locked --all-targets -- --nocapture >"$log" 2>&1 || rc=$?
# The run in brief: each suite and its result.
grep -E '^ +Running |^test result:|^test .* (FAILED|ignored)$' "$log" || true
if [[ $rc != 0 ]]; then
    echo "cargo test failed (exit $rc); what the failing tests said:" >&2
    grep -n -B2 -A40 -E 'panicked at|^failures:' "$log" | tail -n 600 >&2 || true
    echo "(the whole log: $log)" >&2
    exit "$rc"
fi
python3 scripts/check-test-secrets.py --self-test >/dev/null
python3 scripts/check-test-secrets.py "$IRONRACK_TEST_OUTPUT" "$log"
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
[[ "${KEEP_TEST_OUTPUT:-}" == 1 ]] || rm -rf "$out"

fuzz_rc=0
bash scripts/fuzz.sh --ci || fuzz_rc=$?   # every fuzz target 30 s on the checked-in corpus

# One closing line for the whole run: cargo's tests plus one per fuzz target.
if [[ $fuzz_rc != 0 ]]; then
    echo "cargo test: $passed passed; a fuzz target failed (exit $fuzz_rc)" >&2
    exit "$fuzz_rc"
fi
targets=$(bash scripts/fuzz.sh --list | wc -l)
echo "tests: $((passed + targets)) passed, 0 failed"
