#!/usr/bin/env bash
# Install the peer tools ironrack's integration tests talk to.
#
#   * Debian packages: openipmi (ipmi_sim), ipmitool, freeipmi-tools
#     (ipmipower), socat, tcpdump, python3-venv, apache2-utils (htpasswd -B),
#     the TFTP clients curl, tftp-hpa (tftp) and atftp, tftpd-hpa (in.tftpd,
#     the TFTP benchmark peer), and the network boot loaders the demo serves:
#     pxelinux + syslinux-common (pxelinux.0, ldlinux.c32), ipxe (ipxe.efi,
#     undionly.kpxe)
#   * a Python venv at <repo>/.venv with scripts/requirements.txt
#     (sushy-tools -> sushy-emulator, python-ironicclient -> baremetal,
#     openstacksdk)
#   * cargo-fuzz, pinned (`cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION
#     --locked`), and g++ (libFuzzer is C++), for scripts/fuzz.sh
#
# Idempotent and non-interactive; safe to run repeatedly (CI and dev boxes).
#
# Environment:
#   IRONRACK_SKIP_APT=1   skip apt-get when every required binary is already
#                         on PATH (default: always run apt-get update/install)
#   IRONRACK_PYTHON       interpreter used to create the venv (default: python3)
#   IRONRACK_VENV         venv location (default: <repo>/.venv)
#   IRONRACK_FORCE_PIP=1  re-run pip even if requirements.txt is unchanged
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="${REPO_ROOT}/scripts/requirements.txt"
VENV="${IRONRACK_VENV:-${REPO_ROOT}/.venv}"
PYTHON="${IRONRACK_PYTHON:-python3}"
# The cargo-fuzz that scripts/fuzz.sh was last run with.
CARGO_FUZZ_VERSION=0.13.2

APT_PACKAGES=(openipmi ipmitool freeipmi-tools socat tcpdump python3-venv apache2-utils g++
    curl tftp-hpa atftp tftpd-hpa pxelinux syslinux-common ipxe)
# binary -> package, used to decide whether apt can be skipped
REQUIRED_BINARIES=(ipmi_sim ipmitool ipmipower socat tcpdump htpasswd curl tftp atftp in.tftpd)

log() { printf '[install-peers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

have_all_binaries() {
    local b missing=0
    for b in "${REQUIRED_BINARIES[@]}"; do
        # sbin dirs are not always on PATH for non-root users
        if ! command -v "$b" >/dev/null 2>&1 \
            && [[ ! -x "/usr/sbin/$b" && ! -x "/sbin/$b" ]]; then
            log "missing binary: $b"
            missing=1
        fi
    done
    return "$missing"
}

run_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

install_apt_packages() {
    if [[ "${IRONRACK_SKIP_APT:-0}" == "1" ]]; then
        if have_all_binaries; then
            log "IRONRACK_SKIP_APT=1 and all binaries present; skipping apt-get"
            return 0
        fi
        log "IRONRACK_SKIP_APT=1 but binaries are missing; running apt-get anyway"
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found (Debian/Ubuntu required)"

    log "apt-get update"
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    log "apt-get install ${APT_PACKAGES[*]}"
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold \
        "${APT_PACKAGES[@]}" </dev/null

    have_all_binaries || die "binaries still missing after apt-get install"
}

venv_is_usable() {
    [[ -x "${VENV}/bin/python" ]] && "${VENV}/bin/python" -c 'import sys' >/dev/null 2>&1
}

setup_venv() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "python interpreter '$PYTHON' not found"
    "$PYTHON" - <<'PYEOF' || die "Python >= 3.10 required (openstacksdk 4.x); found $("$PYTHON" --version 2>&1)"
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PYEOF

    if ! venv_is_usable; then
        log "creating venv at ${VENV} with $("$PYTHON" --version 2>&1)"
        rm -rf "${VENV}"
        "$PYTHON" -m venv "${VENV}"
    else
        log "reusing venv at ${VENV} ($("${VENV}/bin/python" --version 2>&1))"
    fi

    local stamp="${VENV}/.ironrack-requirements.sha256"
    local want
    want="$(sha256sum "${REQUIREMENTS}" | cut -d' ' -f1)"
    if [[ "${IRONRACK_FORCE_PIP:-0}" != "1" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        log "requirements.txt unchanged since last install; skipping pip"
    else
        log "pip install -r scripts/requirements.txt"
        rm -f "$stamp"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "${VENV}/bin/python" -m pip install \
            --no-input -q -r "${REQUIREMENTS}" </dev/null
        "${VENV}/bin/python" -m pip check
        printf '%s\n' "$want" >"$stamp"
    fi
}

smoke_test() {
    log "smoke test: sushy-emulator --help, baremetal --help"
    "${VENV}/bin/sushy-emulator" --help </dev/null >/dev/null \
        || die "sushy-emulator --help failed"
    "${VENV}/bin/baremetal" --help </dev/null >/dev/null 2>&1 \
        || die "baremetal --help failed"
    log "ipmitool: $(ipmitool -V 2>&1 | head -n1)"
    local ipmipower_bin
    ipmipower_bin="$(command -v ipmipower || echo /usr/sbin/ipmipower)"
    log "ipmipower: $("$ipmipower_bin" --version 2>&1 | head -n1)"
    log "ipmi_sim: $(ipmi_sim -v 2>/dev/null </dev/null | head -n1 || true)"
}

install_cargo_fuzz() {
    local have
    have="$(cargo fuzz --version 2>/dev/null | head -n1 || true)"
    if [[ "$have" == "cargo-fuzz ${CARGO_FUZZ_VERSION}" ]]; then
        log "cargo-fuzz: $have"
    else
        log "cargo install cargo-fuzz --version ${CARGO_FUZZ_VERSION} --locked"
        cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --locked </dev/null
    fi
}

main() {
    install_apt_packages
    setup_venv
    install_cargo_fuzz
    smoke_test
    log "done (venv: ${VENV})"
}

main "$@"
