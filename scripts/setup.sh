#!/usr/bin/env bash
# Installs what wgsparse needs on a fresh Debian/Ubuntu machine, skipping what is
# already there. Sourced by demo.sh and test.sh.
set -euo pipefail

need_apt=()
for pkg in mesa-vulkan-drivers libvulkan1 chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (software Vulkan for machines without a GPU; Chromium for the web tests)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust with rustup first" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup: npm not found: install Node.js 20+ first" >&2; exit 1; }

# lavapipe warns without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
