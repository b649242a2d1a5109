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
cargo test --locked --all-targets
