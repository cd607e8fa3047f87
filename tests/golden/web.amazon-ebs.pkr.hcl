# Rendered by kiln from templates/cloud.pkr.hcl.j2 for role web on amazon-ebs.
# Do not edit: change the role definition and run `invoke render --role web --target amazon-ebs`.
# Bake it where the cloud account is reachable: packer build packer/web.amazon-ebs.pkr.hcl

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

source "amazon-ebs" "web" {
  region        = "eu-west-1"
  instance_type = "t3.small"
  ssh_username  = "admin"
  ami_name      = "kiln-web-${var.version}"
  source_ami_filter {
    filters = {
      "tag:kiln.fingerprint" = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    }
    owners      = ["self"]
    most_recent = true
  }
  tags = {
    "kiln.role"          = "web"
    "kiln.version"       = "${var.version}"
    "kiln.fingerprint"   = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
    "kiln.parent"        = "base:bbbbbbbbbbbb"
    "kiln.source-commit" = "${var.source_commit}"
  }
  run_tags = {
    "kiln.bake" = "${var.bake_id}"
  }
}

build {
  name    = "web"
  sources = ["source.amazon-ebs.web"]

  provisioner "shell" {
    inline = ["cloud-init status --wait >/dev/null"]
  }

  # Ansible reaches the builder directly over SSH; its inventory holds only the builder.
  provisioner "ansible" {
    playbook_file = "packer/web.playbook.yml"
    user          = "admin"
    use_proxy     = false

    extra_arguments = [
      "-e",
      "ansible_python_interpreter=/usr/bin/python3",
      "-e",
      "ansible_become=true",
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

  # Seal: no bake key, host keys, machine id or cloud-init state stays in the image.
  provisioner "shell" {
    inline = [
      "sudo rm -f /tmp/kiln-facts.json",
      "sudo apt-get clean",
      "sudo rm -rf /var/lib/apt/lists/*",
      "sudo cloud-init clean --logs",
      "sudo rm -f /etc/ssh/ssh_host_*",
      "sudo truncate -s 0 /etc/machine-id",
      "rm -f ~/.ssh/authorized_keys",
    ]
  }
}
