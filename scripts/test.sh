#!/usr/bin/env bash
# Runs kiln's whole test suite: lint, types, unit and integration tests (real packer, Docker,
# Ansible, Molecule and QEMU). Run scripts/setup.sh once first. Arguments go to both pytest runs.
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

# The one VM bake (tests marked vm) runs under TCG for 15 to 25 minutes, mostly inside qemu: it
# runs alongside the rest of the suite, its output kept for the end. One vCPU (KILN_VM_CPUS): the
# suite keeps two cores busy without it, and a second vCPU thread would only compete for them.
vm_log=$(mktemp /tmp/kiln-vm-tests.XXXXXX.log)
echo "==> pytest -m vm, in the background (output: $vm_log)"
# Job control on: the background run gets a process group of its own and a working SIGINT
# (without it, bash starts background jobs with SIGINT ignored), so stopping it below is a
# Ctrl-C that every process of the bake (pytest, kiln, packer, qemu) cleans up after.
set -m
KILN_VM_CPUS=${KILN_VM_CPUS:-1} .venv/bin/pytest -ra -p no:cacheprovider -m vm "$@" tests >"$vm_log" 2>&1 &
vm_pid=$!
set +m
stop_vm_tests() {
  kill -INT -- "-$vm_pid" 2>/dev/null || true
  wait "$vm_pid" 2>/dev/null || true
}
trap stop_vm_tests EXIT
trap 'exit 130' INT TERM

# Two workers (pytest-xdist), each taking whole test files: a bake waits on apt, dpkg and
# Docker for much of its time, so two side by side finish sooner even on two cores (see
# bench/parallel.py), and a file's module fixtures (baked sandboxes) are built once.
echo "==> pytest -m 'not vm', two workers"
status=0
.venv/bin/pytest -ra -p no:cacheprovider -m "not vm" -n 2 --dist loadfile "$@" tests || status=$?

echo "==> pytest -m vm (waiting for it to finish)"
vm_status=0
wait "$vm_pid" || vm_status=$?
trap - EXIT
cat "$vm_log"
rm -f "$vm_log"
# Exit code 5 is "no tests collected": arguments that select no VM test (or only VM tests).
[ "$vm_status" -eq 5 ] && vm_status=0
[ "$status" -eq 5 ] && [ "$vm_status" -eq 0 ] && status=0
if [ "$status" -ne 0 ] || [ "$vm_status" -ne 0 ]; then
  echo "pytest failed: exit $status without the VM test, $vm_status for it" >&2
  exit 1
fi
