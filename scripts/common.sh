# Shared steps of scripts/setup.sh and scripts/test.sh. Source it; do not run it.

# packer (1.6.6 in Debian 12) with its built-in docker, qemu and ansible plugins; docker.io for
# the engine; mmdebstrap to bootstrap bases without Docker Hub; qemu, genisoimage, grub and
# e2fsprogs for VM images; chromium to test the HTML report; gnupg and apt-utils to sign and
# index test apt repositories;
# postgresql and docker-registry for the tests of a team's setup (shared registry, OCI registry;
# the tests start throwaway instances of their own); bubblewrap for the sandbox Ansible runs in.
APT_PACKAGES=(
  packer docker.io mmdebstrap git python3-venv python3-dev bubblewrap
  qemu-system-x86 qemu-utils genisoimage grub-pc-bin e2fsprogs fdisk openssh-client
  chromium gnupg apt-utils postgresql docker-registry
)

install_apt_packages() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_venv() {
  local stamp=.venv/.kiln-installed
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  echo "==> creating .venv and installing kiln (editable) with its dev tools"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
}

ensure_dockerd() {
  if docker info >/dev/null 2>&1; then
    return
  fi
  echo "==> starting dockerd in the background (log: /var/log/kiln-dockerd.log)"
  nohup dockerd >/var/log/kiln-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  echo "dockerd did not start; see /var/log/kiln-dockerd.log" >&2
  tail -20 /var/log/kiln-dockerd.log >&2
  exit 1
}
