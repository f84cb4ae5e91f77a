#!/usr/bin/env bash
# Brings a host to the state the QEMU driver and its tests need: qemu-system-x86_64 installed from
# the distribution (Debian's qemu-system-x86), gcc for the guest program, and package lists in which
# apt-get can find busybox-static and linux-image-amd64 (the guest image builder only downloads
# those two with `apt-get download` and unpacks them with `dpkg-deb -x`; they are never installed).
#
# Idempotent and silent when there is nothing to do. Installing needs root or sudo; without either
# it stops with the list of packages to install. Not run by infra/setup.sh: the QEMU driver is
# optional on a host.
set -euo pipefail

say() { echo "[setup-qemu] $*"; }
fail() { echo "[setup-qemu] error: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive

command -v apt-get >/dev/null || fail "apt-get not found: install qemu-system-x86 (qemu-system-x86_64) and gcc by hand, and provide busybox-static and linux-image-amd64 packages"

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    fail "need root or passwordless sudo to run: $*  (as root: apt-get update && apt-get install -y $MISSING_PACKAGES)"
  fi
}

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
MISSING_PACKAGES="${missing[*]:-}"

# Package lists must know the guest's packages for `apt-get download`; a bare image has none.
lists_known() { apt-cache show busybox-static linux-image-amd64 >/dev/null 2>&1; }

updated=0
if (( ${#missing[@]} > 0 )) || ! lists_known; then
  say "apt-get update"
  as_root apt-get update -qq >/dev/null
  updated=1
fi
if (( ${#missing[@]} > 0 )); then
  say "installing ${missing[*]}"
  # Recommends are left out: the guest runs with no network card and no display, so neither the iPXE
  # option ROMs nor the display libraries are used.
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if (( updated )) && ! lists_known; then
  fail "apt-get cannot find busybox-static and linux-image-amd64 after apt-get update: check /etc/apt/sources.list"
fi
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 still missing after installing qemu-system-x86"
