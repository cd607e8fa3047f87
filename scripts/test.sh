#!/usr/bin/env bash
# Runs kiln's whole test suite: lint, types, unit and integration tests (real packer, Docker,
# Ansible and Molecule). Run scripts/setup.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
. scripts/common.sh
ensure_dockerd

echo "==> ruff"
.venv/bin/ruff check lib tests bench tasks.py
.venv/bin/ruff format --check lib tests bench tasks.py
echo "==> mypy"
.venv/bin/mypy lib/kiln
echo "==> pytest"
exec .venv/bin/pytest -ra -p no:cacheprovider "$@" tests
