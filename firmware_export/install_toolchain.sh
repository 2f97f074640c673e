#!/usr/bin/env bash
# Installs what firmware_export needs to cross-compile for and emulate a Cortex-M4F:
# arm-none-eabi-gcc with newlib (Debian: gcc-arm-none-eabi, libnewlib-arm-none-eabi) and
# qemu-system-arm (its netduinoplus2 machine is an STM32F405).
# Idempotent and quiet: exits at once when the tools are there; otherwise apt-get installs them
# (as root, as in CI, or through passwordless sudo) and prints apt's log only if that fails.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
newlib_present() {
    # rdimon.specs ships with newlib; without it the semihosting test program cannot link.
    local specs
    specs="$(arm-none-eabi-gcc -print-file-name=rdimon.specs 2>/dev/null)" || return 1
    case "$specs" in /*) [ -f "$specs" ] ;; *) return 1 ;; esac
}
ready() {
    have arm-none-eabi-gcc && have arm-none-eabi-size && have qemu-system-arm && newlib_present
}

ready && exit 0

if ! have apt-get; then
    echo "install_toolchain.sh: no apt-get here; install arm-none-eabi-gcc, newlib and" \
        "qemu-system-arm with this system's package manager" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install_toolchain.sh: needs root (or passwordless sudo) to apt-get install" \
            "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm" >&2
        exit 1
    fi
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq &&
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_toolchain.sh: apt-get failed (log above)" >&2
    exit 1
fi
if ! ready; then
    echo "install_toolchain.sh: apt-get finished but the toolchain is still incomplete" >&2
    exit 1
fi
