# Rendered by kiln from templates/qemu.pkr.hcl.j2 for role web (qcow2 VM image).
# Do not edit: change the role definition and run `invoke render --role web --target qemu`.
# kiln passes the per-bake throwaway key, seed and output paths as -var values.

# The plugins this file uses, pinned by kiln for Packer 1.7+. kiln runs `packer init` before
# each build; by hand, run `packer init` on this file once before `packer build`.
packer {
  required_plugins {
    ansible = {
      "source"  = "github.com/hashicorp/ansible"
      "version" = "~> 1.1"
    }
    qemu = {
      "source"  = "github.com/hashicorp/qemu"
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

# KVM only when kiln's probe booted a kernel under it; TCG otherwise.
variable "accelerator" {
  type    = string
  default = "tcg"
}

# KILN_VM_CPUS: sizes the throwaway builder only, so it is not part of the fingerprint.
variable "cpus" {
  type    = number
  default = 2
}

variable "ssh_key_file" {
  type = string
}

variable "seed_dir" {
  type = string
}

variable "output_dir" {
  type = string
}

variable "serial_log" {
  type = string
}

source "qemu" "web" {
  disk_image       = true
  iso_url          = "artifacts/debian-bookworm/4/vm.qcow2"
  iso_checksum     = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
  skip_resize_disk = true
  format           = "qcow2"
  disk_compression = true
  disk_interface   = "virtio"
  disk_discard     = "unmap"
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  memory           = 1024
  cpus             = var.cpus
  headless         = true
  vnc_bind_address = "127.0.0.1"
  output_directory = var.output_dir
  vm_name          = "web.qcow2"

  # Packer's default netdev listens on every address; this one forwards SSH on loopback only.
  qemuargs = [
    [
      "-netdev",
      "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22",
    ],
    [
      "-serial",
      "file:\u0024{var.serial_log}",
    ],
  ]

  cd_files = ["${var.seed_dir}/user-data", "${var.seed_dir}/meta-data"]
  cd_label = "cidata"

  communicator         = "ssh"
  ssh_host             = "127.0.0.1"
  ssh_username         = "packer"
  ssh_private_key_file = var.ssh_key_file
  # Under TCG a boot to sshd takes minutes, and slirp accepts the port before sshd listens.
  ssh_timeout            = "15m"
  ssh_handshake_attempts = 100

  # Seal: nothing of this bake, its user, its key or this instance's identity may ship.
  shutdown_command = "sudo sh -euc 'cloud-init clean --logs; rm -f /etc/ssh/ssh_host_*; truncate -s 0 /etc/machine-id; rm -f /var/lib/dbus/machine-id; userdel --force --remove packer; rm -f /etc/sudoers.d/90-cloud-init-users; rm -rf /root/.ansible /tmp/kiln-facts.json; apt-get clean; rm -rf /var/lib/apt/lists/*; fstrim -av || true; sync; poweroff'"
  shutdown_timeout = "5m"
}

build {
  name    = "web"
  sources = ["source.qemu.web"]

  provisioner "shell" {
    # Like a freshly booted server, the VM has current package lists before Ansible starts.
    inline = [
      "cloud-init status --wait >/dev/null || { cloud-init status --long; exit 1; }",
      "sudo apt-get -q update",
    ]
  }

  # Ansible reaches the VM over SSH on the loopback-forwarded port; its inventory is that VM.
  # kiln-ansible runs it in kiln's sandbox, which has no network: a unix-socket bridge carries
  # that one port into it (kiln.controller.bridge).
  provisioner "ansible" {
    command       = "kiln-ansible"
    playbook_file = "packer/web.playbook.yml"
    user          = "packer"
    use_proxy     = false

    extra_arguments = [
      "--become",
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
      "ANSIBLE_SSH_RETRIES=5",
      "ANSIBLE_TIMEOUT=120",
      "ANSIBLE_HOST_KEY_CHECKING=False",
    ]
  }

  # The image's facts (packages, sources, licenses): kiln's script, run by the guest's python3.
  provisioner "shell" {
    environment_vars = ["KILN_FACTS_OUT=/tmp/kiln-facts.json"]
    script           = "lib/kiln/targets/capture_facts.py"
  }

  provisioner "file" {
    direction   = "download"
    source      = "/tmp/kiln-facts.json"
    destination = var.manifest_file
  }
}
