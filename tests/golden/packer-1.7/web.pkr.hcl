# Rendered by kiln from templates/docker.pkr.hcl.j2 for role web. Do not edit:
# change the role definition and run `invoke render --role web`.
# By hand, from the repository root: packer build packer/web.pkr.hcl

# The plugins this file uses, pinned by kiln for Packer 1.7+. kiln runs `packer init` before
# each build; by hand, run `packer init` on this file once before `packer build`.
packer {
  required_plugins {
    ansible = {
      "source"  = "github.com/hashicorp/ansible"
      "version" = "~> 1.1"
    }
    docker = {
      "source"  = "github.com/hashicorp/docker"
      "version" = "~> 1.1"
    }
  }
}

variable "version" {
  type    = string
  default = "dev"
}

variable "source_commit" {
  type    = string
  default = "unknown"
}

variable "bake_id" {
  type    = string
  default = "manual"
}

variable "manifest_file" {
  type    = string
  default = ".kiln/work/web/manual/facts.json"
}

variable "events_file" {
  type    = string
  default = ""
}

source "docker" "web" {
  image  = "kiln/base:7"
  pull   = false
  commit = true
  # systemd runs as PID 1 so that roles can enable, start and restart services as on a server.
  run_command = [
    "-d",
    "--label",
    "kiln.bake=${var.bake_id}",
    "--label",
    "kiln.namespace=kiln",
    "--label",
    "kiln.owner=kiln/kiln-5ca1ab1e",
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "SYS_PTRACE",
    "--security-opt",
    "seccomp=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--stop-signal",
    "SIGRTMIN+3",
    "-v",
    "kiln-apt-archives:/run/kiln-apt-cache",
    "--",
    "{{.Image}}",
    "/sbin/init",
  ]

  changes = [
    "CMD [\"/sbin/init\"]",
    "LABEL kiln.role=web",
    "LABEL kiln.version=${var.version}",
    "LABEL kiln.fingerprint=eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
    "LABEL kiln.parent=base:7",
    "LABEL kiln.source-commit=${var.source_commit}",
    "LABEL kiln.bake=\"\"",
  ]
}

build {
  name    = "web"
  sources = ["source.docker.web"]

  # Wait from the host until systemd has booted: its tmpfiles step empties /tmp, where Packer
  # uploads scripts and apt's gpgv keeps its temporary files, so nothing may start before that.
  # Until systemd listens on its socket, `systemctl --wait` fails at once ("Failed to connect to
  # bus"), so first wait for the socket. Then the apt hooks (lib/kiln/targets/docker/apt_cache.py)
  # go to the builder's /run, a tmpfs that is never committed: the shared .deb cache and
  # builder-only apt settings. Then `apt-get update` starts in the background, so that roles find
  # current package lists as on a freshly booted server (restored from the verified lists cache
  # where possible); it runs while Ansible starts and gathers facts, and the play's first task
  # waits for it. The seal step removes the lists again.
  provisioner "shell-local" {
    environment_vars = ["KILN_APT_CACHE_SCRIPT=lib/kiln/targets/docker/apt_cache.py"]
    inline = [
      "timeout 120 sh -c 'until docker exec ${build.ID} test -S /run/systemd/private; do sleep 0.2; done; docker exec ${build.ID} systemctl is-system-running --wait' >/dev/null 2>&1 || true",
      "docker exec -i ${build.ID} sh -c 'cat > /run/kiln-apt.py && python3 /run/kiln-apt.py setup' < \"$KILN_APT_CACHE_SCRIPT\"",
      "docker exec -d ${build.ID} python3 /run/kiln-apt.py update",
    ]
  }

  # kiln-ansible (kiln.controller) runs the play through ansible-runner in kiln's sandbox: no
  # network but the Docker engine's socket, no host files but the project (by hand: with kiln's
  # venv on PATH). No version check: kiln records ansible-core's version itself, and Packer's
  # check starts Ansible twice a bake. Packer's inventory then names the host with ansible_ssh_*
  # variables, which ansible-core still reads; the connection itself comes from -e below.
  provisioner "ansible" {
    command            = "kiln-ansible"
    playbook_file      = "packer/web.playbook.yml"
    user               = "root"
    skip_version_check = true

    extra_arguments = [
      "-e",
      "ansible_host=${build.ID}",
      "-e",
      "ansible_ssh_host=${build.ID}",
      "-e",
      "ansible_connection=docker",
      "-e",
      "ansible_python_interpreter=/usr/bin/python3",
      "-e",
      "{\"web_message\": \"Baked once, never patched.\", \"web_title\": \"Hello from kiln\"}",
    ]

    ansible_env_vars = [
      "ANSIBLE_PIPELINING=True",
      "ANSIBLE_NO_TARGET_SYSLOG=True",
      "ANSIBLE_CALLBACKS_ENABLED=kiln_events",
      "ANSIBLE_RETRY_FILES_ENABLED=False",
      "ANSIBLE_NOCOLOR=True",
      "ANSIBLE_ROLES_PATH=roles:.kiln/galaxy/roles",
      "ANSIBLE_COLLECTIONS_PATH=.kiln/galaxy/collections",
      "ANSIBLE_CALLBACK_PLUGINS=lib/kiln/ansible_plugins/callback",
      "KILN_EVENTS_FILE=${var.events_file}",
      "ANSIBLE_STRATEGY_PLUGINS=lib/kiln/ansible_plugins/strategy",
      "ANSIBLE_STRATEGY=kiln_linear",
    ]
  }

  # Copy kiln's facts script into the builder's /run (a tmpfs, never committed); remove the apt
  # hooks (and say what came from the cache), write the image's facts (packages, apt sources,
  # licenses) into /run, then seal: nothing of the bake stays in the image. All in one `docker
  # exec`. Then copy the facts out and tell kiln's progress display that packer now commits.
  provisioner "shell-local" {
    environment_vars = ["KILN_MANIFEST_FILE=${var.manifest_file}", "KILN_EVENTS_FILE=${var.events_file}", "KILN_FACTS_SCRIPT=lib/kiln/targets/capture_facts.py"]
    inline = [
      "docker exec -i ${build.ID} sh -c 'cat > /run/kiln-facts.py' < \"$KILN_FACTS_SCRIPT\"",
      "docker exec -i ${build.ID} sh -e <<'KILN_SEAL'",
      "python3 /run/kiln-apt.py finish",
      "KILN_FACTS_OUT=/run/kiln-facts.json python3 /run/kiln-facts.py",
      "apt-get clean",
      "rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/* /root/.ansible",
      "rm -f /var/lib/apt/periodic/update-success-stamp",
      "touch -d @0 /var/lib/apt/lists",
      "find /var/log -type f -name '*.log' -exec truncate -s 0 {} +",
      "find /var/log/journal -type f -name '*.journal*' -delete",
      "KILN_SEAL",
      "mkdir -p \"$(dirname \"$KILN_MANIFEST_FILE\")\"",
      "docker exec ${build.ID} cat /run/kiln-facts.json > \"$KILN_MANIFEST_FILE\"",
      "[ -z \"$KILN_EVENTS_FILE\" ] || echo '{\"event\": \"phase\", \"phase\": \"commit\"}' >> \"$KILN_EVENTS_FILE\"",
    ]
  }

  post-processor "docker-tag" {
    repository = "kiln/kiln-5ca1ab1e/web"
    tags       = [var.version]
  }
}
