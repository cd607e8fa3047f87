"""Benchmark: the nginx role baked by kiln against a hand-written Packer template, alternated.

(a) `invoke bake web --force --skip-tests` (the image's acceptance tests are kiln's own extra and
    are left out, so both sides do the same work: a builder, the web role, a committed image);
(b) `packer build` of a template written the way Packer's documentation shows it: the docker
    source and the ansible provisioner with its default SSH proxy, `user = "root"` and the
    ssh-rsa workaround that OpenSSH needs for Packer 1.6's proxy. The builder runs systemd as
    PID 1 like kiln's, or the role's `service` tasks fail in a bare container.
Both start from the same parent image (the scratch project's `base`) and apply the same role with
the same variables, and both gather Ansible's default (full) facts: neither kiln's definition nor
the hand-written playbook narrows gather_subset. Runs alternate a, b, a, b... Prints every run,
the medians and the ratio.

Run from the repository root: .venv/bin/python bench/bake_vs_packer.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _common import INVOKE, Sandbox, bench_env, load, make_sandbox, print_ratio, run, timed

TARGET_RATIO = 0.50
KILN_BAKE = [*INVOKE, "bake", "web", "--force", "--skip-tests"]
# Packer 1.6's SSH proxy offers only ssh-rsa host keys, which OpenSSH refuses unless told to.
SSH_RSA = "-o HostKeyAlgorithms=+ssh-rsa -o PubkeyAcceptedKeyTypes=+ssh-rsa"
TEMPLATE = """
variable "image" {
  type = string
}

source "docker" "nginx" {
  image  = var.image
  pull   = false
  commit = true
  run_command = ["-d", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
    "--tmpfs", "/run/lock", "--", "{{.Image}}", "/sbin/init"]
  changes = ["CMD [\\"/sbin/init\\"]"]
}

build {
  sources = ["source.docker.nginx"]

  provisioner "ansible" {
    playbook_file = "playbook.yml"
    user          = "root"
    extra_arguments = [
      "--extra-vars", "@vars.json",
      "--extra-vars", "ansible_ssh_extra_args='SSH_RSA'",
    ]
    ansible_env_vars = ["ANSIBLE_HOST_KEY_CHECKING=False"]
  }

  post-processor "docker-tag" {
    repository = "REPOSITORY"
    tags       = ["packer"]
  }
}
"""
PLAYBOOK = """---
- name: Install and configure nginx
  hosts: all
  roles:
    - web
"""


def parent_image(box: Sandbox) -> str:
    """The image both sides start from: the scratch project's baked `base`."""
    with box.registry() as registry:
        base = registry.latest("base")
        assert base is not None and base.artifacts
        return base.artifacts[0].ref


def hand_written_packer(box: Sandbox, parent: str) -> tuple[list[str], Path, dict[str, str]]:
    """Write the hand-written template next to the project; its command, directory and env."""
    hand = box.root / "hand"
    hand.mkdir(exist_ok=True)
    repository = f"{box.namespace}/hand-nginx"
    (hand / "nginx.pkr.hcl").write_text(
        TEMPLATE.replace("REPOSITORY", repository).replace("SSH_RSA", SSH_RSA)
    )
    (hand / "playbook.yml").write_text(PLAYBOOK)
    if not (hand / "roles").exists():
        (hand / "roles").symlink_to(box.root / "roles")  # Ansible looks next to the playbook
    (hand / "vars.json").write_text(json.dumps(box.web_variables))
    argv = ["packer", "build", "-var", f"image={parent}", "nginx.pkr.hcl"]
    return argv, hand, {**bench_env(box), "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}


def check_hand_made_page(box: Sandbox) -> None:
    """The hand-written template really baked the role: its image serves the role's page."""
    page = box.docker(
        "run", "--rm", "--entrypoint", "cat", f"{box.namespace}/hand-nginx:packer",
        "/var/www/kiln/index.html",
    )  # fmt: skip
    assert box.web_variables["web_title"] in page, "the hand-made image has no page"


@dataclass
class Prepared:
    """A scratch project with base and web baked once, and the hand-written template beside it."""

    box: Sandbox
    env: dict[str, str]  # kiln's environment
    parent: str  # the image both sides start from
    packer: list[str]  # the hand-written template's command, run in hand
    hand: Path
    packer_env: dict[str, str]


@contextmanager
def prepared(tmp: Path) -> Iterator[Prepared]:
    """Bake base and web once in a scratch project under tmp; removed with its images after."""
    box = make_sandbox(tmp)
    try:
        env = bench_env(box)
        print(f"preparing: baking base and web once ({load()})", flush=True)
        run([*INVOKE, "bake", "web", "--skip-tests"], cwd=box.root, env=env)
        parent = parent_image(box)
        packer, hand, packer_env = hand_written_packer(box, parent)
        yield Prepared(box, env, parent, packer, hand, packer_env)
        check_hand_made_page(box)
    finally:
        box.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    args = parser.parse_args()
    kiln_s: list[float] = []
    packer_s: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="kiln-bench-packer-") as tmp,
        prepared(Path(tmp)) as bench,
    ):
        print(f"both bake nginx on {bench.parent}", flush=True)
        for index in range(args.runs):
            kiln_s.append(timed(KILN_BAKE, cwd=bench.box.root, env=bench.env))
            print(f"run {index + 1}: kiln {kiln_s[-1]:.1f} s ({load()})", flush=True)
            packer_s.append(timed(bench.packer, cwd=bench.hand, env=bench.packer_env))
            print(f"run {index + 1}: packer {packer_s[-1]:.1f} s ({load()})", flush=True)
    print_ratio(kiln_s, packer_s, TARGET_RATIO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
