"""kiln in an existing Ansible repository: a wheel, a fresh venv, a directory outside this one.

The test does exactly the steps of the README's "Use kiln in your Ansible repository": build the
wheel, install it into a new venv, write tasks.py next to a community-style role, run
`<venv>/bin/invoke bake` with that venv's bin/ off PATH, and check the service in the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, new_namespace
from kiln.registry import Registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROLE = "lighttpd"

# What the wheel must hold besides the modules: kiln finds them in the installed package.
WHEEL_FILES = (
    "kiln/templates/docker.pkr.hcl.j2",
    "kiln/templates/qemu.pkr.hcl.j2",
    "kiln/templates/cloud.pkr.hcl.j2",
    "kiln/templates/playbook.yml.j2",
    "kiln/templates/scaffold/role/tasks/main.yml",
    "kiln/templates/scaffold/molecule/molecule.yml",
    "kiln/molecule_shared/create.yml",
    "kiln/molecule_shared/destroy.yml",
    "kiln/ansible_plugins/callback/kiln_events.py",
    "kiln/batteries/base/test_base.py",
    "kiln/batteries/plugin.py",
    "kiln/py.typed",
)
# Local state and build output of this working tree: never part of what a wheel is built from.
NOT_SOURCE = (".git", ".venv", ".kiln", "build", "dist", "packer", "artifacts", "*.egg-info")
NOT_SOURCE += ("__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")

# A role as Galaxy ships them, not as kiln's own are written: short module names, a free-form
# call, yes/no booleans, an implicit octal mode, and a handler restarting the service.
ROLE_FILES = {
    "meta/main.yml": """\
        ---
        galaxy_info:
          role_name: lighttpd
          namespace: acme
          author: acme
          description: Install and configure lighttpd
          license: MIT
          min_ansible_version: "2.14"
          platforms:
            - name: Debian
              versions:
                - bookworm
          galaxy_tags:
            - web
        dependencies: []
        """,
    "defaults/main.yml": """\
        ---
        lighttpd_port: 80
        lighttpd_server_tag: acme-lighttpd
        lighttpd_index_text: Hello from lighttpd
        """,
    "tasks/main.yml": """\
        ---
        - name: Install lighttpd
          apt:
            name: lighttpd
            state: present
            update_cache: yes

        - name: Configure lighttpd
          template:
            src: acme.conf.j2
            dest: /etc/lighttpd/conf-enabled/99-acme.conf
            mode: 0644
          notify: restart lighttpd

        - name: Write the index page
          template: src=index.html.j2 dest=/var/www/html/index.html mode=0644

        - name: Start lighttpd
          service:
            name: lighttpd
            state: started
            enabled: yes
        """,
    "handlers/main.yml": """\
        ---
        - name: restart lighttpd
          service:
            name: lighttpd
            state: restarted
        """,
    "templates/acme.conf.j2": """\
        # {{ ansible_managed }}
        # ":=" replaces what lighttpd.conf set; a second "=" is a configuration error.
        server.port := {{ lighttpd_port }}
        server.tag := "{{ lighttpd_server_tag }}"
        """,
    "templates/index.html.j2": """\
        <p>{{ lighttpd_index_text }}</p>
        """,
}
ANSIBLE_CFG = """\
    [defaults]
    roles_path = roles
    """
TASKS_PY = '''\
    """Images of this Ansible repository."""
    from pathlib import Path

    from kiln import Project
    from kiln.tasks import collection

    here = Path(__file__).resolve().parent
    project = Project(here, roles_path=["roles"], name="www", image_namespace="{namespace}")
    bookworm = project.base("debian-bookworm", suite="bookworm")
    project.role(
        "lighttpd",
        parent=bookworm,
        ansible_roles=["lighttpd"],
        variables={{"lighttpd_index_text": "{page}"}},
    )
    ns = collection(project)
    '''
PAGE = "Baked by kiln in a plain Ansible repository"
# How kiln documents starting an image (README, `invoke run`): systemd as PID 1.
RUN_FLAGS = [
    *("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--cgroupns=host"),
    *("-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock"),
    *("--stop-signal", "SIGRTMIN+3"),
]
FETCH = (
    "import urllib.request as u; r = u.urlopen('http://127.0.0.1/', timeout=5); "
    "print(r.headers['Server']); print(r.read().decode())"
)


def run(
    argv: list[str], *, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a step of the walk-through; a failing step fails the test with its output."""
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{output}"
    return proc


def user_environment() -> dict[str, str]:
    """The caller's environment with no venv: no bin/ that holds Ansible or invoke on PATH.

    kiln must find ansible-playbook, ansible-lint and pytest next to its own interpreter.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    tools = ("ansible-playbook", "ansible-lint", "invoke", "pytest", "molecule")
    path = [
        d
        for d in env.get("PATH", "").split(os.pathsep)
        if d and not any((Path(d) / tool).exists() for tool in tools)
    ]
    env["PATH"] = os.pathsep.join(path)
    return env


def summary(timings: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items())


@pytest.fixture
def namespace() -> Iterator[str]:
    name = new_namespace()
    try:
        yield name
    finally:
        Sandbox(root=REPO, namespace=name).cleanup()  # its containers and images only


def test_wheel_in_a_fresh_venv_bakes_an_existing_ansible_repository(
    tmp_path: Path, namespace: str
) -> None:
    assert REPO not in tmp_path.parents
    timings: dict[str, float] = {}
    env = user_environment()
    assert shutil.which("ansible-playbook", path=env["PATH"]) is None

    # 1. The wheel, built from a copy of the sources: pip builds in the tree it is given, and
    #    this working tree is shared. The copy keeps symlinks (lib/kiln/templates -> templates).
    source = tmp_path / "kiln-source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    started = time.monotonic()
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)]
    run(build, timeout=300)
    timings["wheel build"] = time.monotonic() - started
    (wheel,) = dist.glob("kiln-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert not [f for f in WHEEL_FILES if f not in names], sorted(names)

    # 2. A fresh venv with the wheel; its dependencies come from the package index.
    venv = tmp_path / "venv"
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], timeout=120, env=env)
    timings["venv create"] = time.monotonic() - started
    started = time.monotonic()
    # --no-compile: byte-compiling ansible's thousands of modules is most of the install's CPU
    # (54 s of 69 s measured) and changes nothing kiln does; Python compiles what it imports.
    install = [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", str(wheel)]
    run(install, timeout=600, env=env)
    timings["pip install"] = time.monotonic() - started
    probe = "import kiln.resources as r; print(r.PACKAGE_DIR); print(r.missing())"
    python = str(venv / "bin" / "python")
    where = run([python, "-c", probe], timeout=60, env=env, cwd=tmp_path).stdout.splitlines()
    assert Path(where[0]).is_relative_to(venv), where
    assert where[1] == "[]", where

    # 3. The Ansible repository: roles/, an ansible.cfg, and kiln's tasks.py; nothing else.
    project = tmp_path / "ansible-repo"
    for rel, text in ROLE_FILES.items():
        path = project / "roles" / ROLE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (project / "ansible.cfg").write_text(textwrap.dedent(ANSIBLE_CFG))
    (project / "tasks.py").write_text(
        textwrap.dedent(TASKS_PY).format(namespace=namespace, page=PAGE)
    )

    # 4. The bake, as the user types it: the venv's invoke by path, the venv not activated.
    started = time.monotonic()
    bake = run([str(venv / "bin" / "invoke"), "bake", ROLE], timeout=900, cwd=project, env=env)
    timings["bake"] = time.monotonic() - started
    print(bake.stdout[-3000:], bake.stderr[-3000:], summary(timings), sep="\n")
    assert "Traceback" not in bake.stdout + bake.stderr
    assert not (project / "templates").exists()
    # Ansible was handed kiln's callback plugin from the installed package, not from this tree.
    hcl = (project / "packer" / f"{ROLE}.pkr.hcl").read_text()
    assert f"ANSIBLE_CALLBACK_PLUGINS={venv}/lib/" in hcl, hcl
    # And kiln's strategy: Mitogen, installed with the wheel's dependencies, ran the play.
    assert f"ANSIBLE_STRATEGY_PLUGINS={venv}/lib/" in hcl, hcl
    assert "Mitogen did not load" not in bake.stdout + bake.stderr

    # 5. The image, started the way kiln documents: lighttpd running and answering inside it.
    # Named after the project and its registry (README, "Image names").
    with Registry(project / ".kiln" / "registry.db") as registry:
        image = f"{namespace}/www-{registry.identity()[:8]}/{ROLE}:1"
        recorded = registry.latest(ROLE)
    assert recorded is not None and recorded.artifact("docker").ref == image  # type: ignore[union-attr]
    container = run(["docker", "run", "-d", *RUN_FLAGS, image], timeout=60).stdout.strip()
    # Until systemd listens on its bus, is-system-running says "offline" at once: poll it.
    # "degraded" (an unrelated unit failed) exits 1 but has finished booting, as "running" has.
    state = ""
    deadline = time.monotonic() + 90
    while state not in ("running", "degraded") and time.monotonic() < deadline:
        time.sleep(0.5)
        state = subprocess.run(
            ["docker", "exec", container, "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        ).stdout.strip()
    assert state in ("running", "degraded"), state
    active = run(["docker", "exec", container, "systemctl", "is-active", "lighttpd"], timeout=30)
    assert active.stdout.strip() == "active"
    # lighttpd's unit is Type=simple: "active" as soon as it runs, a moment before it listens.
    fetch = ["docker", "exec", container, "python3", "-c", FETCH]
    deadline = time.monotonic() + 30
    while (
        subprocess.run(fetch, capture_output=True, timeout=30, check=False).returncode != 0
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    served = run(fetch, timeout=30).stdout
    assert served.splitlines()[:2] == ["acme-lighttpd", f"<p>{PAGE}</p>"], served

    print(f"\nkiln from a wheel in a fresh venv: {summary(timings)}")
