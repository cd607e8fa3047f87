#!/usr/bin/env bash
# Sets kiln up on a fresh Debian 12 machine (as root) and bakes the `web` role on the local
# Docker engine. Safe to run again: every step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
. scripts/common.sh

install_apt_packages
install_venv
ensure_dockerd
echo "==> invoke bake web"
.venv/bin/invoke bake web
