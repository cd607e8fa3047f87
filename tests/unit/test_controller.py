"""kiln.controller's parts on real sockets, a real bubblewrap and a real ansible-runner run.

The whole controller (Packer → kiln-ansible → sandbox → ansible-runner) runs in every
integration bake; the hostile roles of tests/integration/test_hostile_roles.py prove the sandbox.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from kiln.controller.bridge import PortToSocket, SocketToPort
from kiln.controller.config import project_config_warning
from kiln.controller.engine_proxy import EngineProxy, allowed
from kiln.controller.entry import docker_target
from kiln.controller.environment import sandbox_environment
from kiln.controller.events import kiln_event
from kiln.controller.inventory import loopback_ssh_port
from kiln.controller.sandbox import SandboxSpec, bwrap_argv

BUILDER = "19d5f0a9622c51d70c3995108ab133432e88a2fdb15e8f9874192f200d134091"
OTHER = "0c535c530cd5cf1fd806aaf94afc7698fb6697b9b9b2db322aed9e4c9ed8d546"


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/_ping"),
        ("HEAD", "/v1.41/_ping"),
        ("GET", "/v1.41/version"),
        ("GET", f"/v1.41/containers/{BUILDER}/json"),
        ("POST", f"/v1.41/containers/{BUILDER}/exec"),
        ("POST", f"/v1.41/containers/{BUILDER[:12]}/exec"),
        ("PUT", f"/v1.41/containers/{BUILDER}/archive?path=%2Ftmp"),
        ("POST", f"/v1.41/exec/{OTHER}/start"),
        ("GET", f"/v1.41/exec/{OTHER}/json"),
        ("POST", "/v1.41/containers/kiln-test-1/exec"),
    ],
)
def test_the_engine_proxy_lets_through_what_a_docker_connection_needs(
    method: str, path: str
) -> None:
    assert allowed(method, path, [BUILDER, "kiln-test-1"])


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/v1.41/containers/create"),
        ("GET", "/v1.41/containers/json"),
        ("POST", f"/v1.41/containers/{OTHER}/exec"),
        ("PUT", f"/v1.41/containers/{OTHER}/archive?path=%2F"),
        ("POST", f"/v1.41/containers/{BUILDER[:11]}/exec"),  # too short to be only the builder
        ("POST", f"/v1.41/containers/{BUILDER}/start"),
        ("DELETE", f"/v1.41/containers/{BUILDER}"),
        ("POST", "/v1.41/images/create?fromImage=x"),
        ("POST", "/v1.41/build"),
        ("GET", "/v1.41/volumes"),
        ("POST", "/v1.41/containers/kiln-test-10/exec"),
        ("GET", f"/v1.41/containers/{BUILDER}/../{OTHER}/json"),
    ],
)
def test_the_engine_proxy_refuses_everything_else(method: str, path: str) -> None:
    assert not allowed(method, path, [BUILDER, "kiln-test-1"])


def _fake_engine(path: Path, seen: list[bytes]) -> socket.socket:
    """A unix-socket HTTP server that records each request head and answers 200."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                seen.append(head)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    return server


def _request(path: Path, line: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        client.sendall(f"{line}\r\nHost: docker\r\nConnection: keep-alive\r\n\r\n".encode())
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
        return answer


def test_the_engine_proxy_forwards_allowed_requests_and_answers_403_to_the_rest() -> None:
    base = Path(os.environ.get("TMPDIR", "/tmp"))
    with _tmp_sockets(base) as where:
        seen: list[bytes] = []
        engine = _fake_engine(where / "engine.sock", seen)
        with EngineProxy(where / "proxy.sock", where / "engine.sock", [BUILDER]) as proxy:
            ok = _request(where / "proxy.sock", f"POST /v1.41/containers/{BUILDER}/exec HTTP/1.1")
            refused = _request(where / "proxy.sock", "POST /v1.41/containers/create HTTP/1.1")
        engine.close()
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"ok")
    assert refused.startswith(b"HTTP/1.1 403")
    assert len(seen) == 1  # the refused request never reached the engine
    assert b"Connection: close" in seen[0] and b"keep-alive" not in seen[0]
    assert proxy.refused == ["POST /v1.41/containers/create HTTP/1.1"]


def _keep_alive_engine(path: Path, seen: list[bytes], exec_answer: bytes) -> socket.socket:
    """A unix-socket HTTP server that, like the engine, reads request after request on one
    connection until told to close; an exec start gets exec_answer."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def serve_one(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                seen.append(head.split(b"\r\n", 1)[0])
                size = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(buffer) < size:
                    buffer += conn.recv(4096)
                buffer = buffer[size:]
                if b"/start" in seen[-1]:
                    conn.sendall(exec_answer)
                    if exec_answer.startswith(b"HTTP/1.1 101"):
                        conn.sendall(conn.recv(100).upper())  # the exec: echo in capitals
                        return
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if b"connection: close" in head.lower():
                    return

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def _send(path: Path, data: bytes, then: bytes = b"") -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(data)
        if then:
            client.recv(4096)
            client.sendall(then)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
        return answer


SMUGGLED = b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n\r\n"
EXEC_ID = "a" * 64


@pytest.mark.parametrize("upgrade", [b"", b"Connection: Upgrade\r\nUpgrade: tcp\r\n"])
def test_a_request_pipelined_behind_an_allowed_one_never_reaches_the_engine(
    upgrade: bytes,
) -> None:
    with _tmp_sockets(Path("/tmp")) as where:
        seen: list[bytes] = []
        engine = _keep_alive_engine(where / "engine.sock", seen, b"")
        with EngineProxy(where / "proxy.sock", where / "engine.sock", [BUILDER]):
            allowed_one = (
                f"GET /v1.41/containers/{BUILDER}/json HTTP/1.1\r\nHost: docker\r\n".encode()
                + upgrade
                + b"\r\n"
            )
            answer = _send(where / "proxy.sock", allowed_one + SMUGGLED)
        engine.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert seen == [f"GET /v1.41/containers/{BUILDER}/json HTTP/1.1".encode()]


def _exec_start(
    engine_answer: bytes, behind: bytes = b"", then: bytes = b""
) -> tuple[bytes, list[bytes]]:
    """An exec start through the proxy (behind: bytes sent right after it); what the client got
    back and the request lines the engine saw."""
    start = (
        f"POST /v1.41/exec/{EXEC_ID}/start HTTP/1.1\r\nHost: docker\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    with _tmp_sockets(Path("/tmp")) as where:
        seen: list[bytes] = []
        engine = _keep_alive_engine(where / "engine.sock", seen, engine_answer)
        with EngineProxy(where / "proxy.sock", where / "engine.sock", [BUILDER]):
            answer = _send(where / "proxy.sock", start + behind, then=then)
        engine.close()
    return answer, seen


def test_an_exec_start_the_engine_refuses_carries_nothing_behind_it() -> None:
    refusal = b"HTTP/1.1 409 Conflict\r\nContent-Length: 9\r\n\r\nconflict!"
    answer, seen = _exec_start(refusal, behind=SMUGGLED)
    assert answer == refusal
    assert seen == [f"POST /v1.41/exec/{EXEC_ID}/start HTTP/1.1".encode()]


def test_an_exec_start_the_engine_accepts_becomes_the_execs_stream() -> None:
    switched = b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    answer, _seen = _exec_start(switched, then=b"stdin of the exec")
    assert answer == b"STDIN OF THE EXEC"


class _tmp_sockets:
    """A short private directory for unix sockets (a socket path holds at most 107 bytes)."""

    def __init__(self, base: Path) -> None:
        import tempfile

        self.path = Path(tempfile.mkdtemp(prefix="kt-", dir="/tmp"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


def test_the_bridge_carries_one_port_through_a_unix_socket() -> None:
    echo = socket.create_server(("127.0.0.1", 0))
    port = echo.getsockname()[1]

    def serve() -> None:
        conn, _ = echo.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())

    threading.Thread(target=serve, daemon=True).start()
    with _tmp_sockets(Path("/tmp")) as where:
        free = socket.create_server(("127.0.0.1", 0))
        inner_port = free.getsockname()[1]
        free.close()
        with (
            SocketToPort(where / "ssh.sock", "127.0.0.1", port),
            PortToSocket("127.0.0.1", inner_port, where / "ssh.sock"),
            socket.create_connection(("127.0.0.1", inner_port), timeout=10) as client,
        ):
            client.sendall(b"ssh-2.0")
            assert client.recv(100) == b"SSH-2.0"
    echo.close()


def test_the_environment_inside_is_built_from_an_allow_list(tmp_path: Path) -> None:
    outside = {
        "ANSIBLE_ROLES_PATH": "roles",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_VARS_PLUGINS": "/evil",
        "ANSIBLE_CONFIG": "/evil/ansible.cfg",
        "ANSIBLE_LOG_PATH": "/tmp/log",
        "AWS_SECRET_ACCESS_KEY": "x",
        "DOCKER_HOST": "tcp://10.0.0.1:2375",
        "SSH_AUTH_SOCK": "/run/agent",
        "HOME": "/root",
        "KILN_EVENTS_FILE": "/w/events.jsonl",
    }
    inside = sandbox_environment(outside, tmp_path)
    assert inside["ANSIBLE_ROLES_PATH"] == "roles"
    assert inside["ANSIBLE_PIPELINING"] == "True"
    assert inside["KILN_EVENTS_FILE"] == "/w/events.jsonl"
    assert inside["ANSIBLE_CONFIG"] == str(tmp_path / "ansible.cfg")
    assert inside["DOCKER_HOST"] == "unix:///run/docker.sock"
    assert inside["HOME"] == str(tmp_path / "home")
    for name in ("ANSIBLE_VARS_PLUGINS", "ANSIBLE_LOG_PATH", "AWS_SECRET_ACCESS_KEY"):
        assert name not in inside
    assert "SSH_AUTH_SOCK" not in inside


def test_the_docker_target_is_the_last_ansible_host_of_a_docker_connection() -> None:
    args = [
        "-e",
        "ansible_host=a",
        "-e",
        "ansible_connection=docker",
        "-e",
        f"ansible_host={BUILDER}",
    ]
    assert docker_target(args) == BUILDER
    assert docker_target(["-e", "ansible_host=127.0.0.1", "-e", "ansible_port=2222"]) is None


def test_a_loopback_inventory_gets_a_bridge_and_a_remote_one_does_not(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    inventory.write_text("default ansible_host=127.0.0.1 ansible_user=packer ansible_port=40123\n")
    assert loopback_ssh_port(inventory) == 40123
    inventory.write_text("default ansible_host=203.0.113.9 ansible_user=admin ansible_port=22\n")
    assert loopback_ssh_port(inventory) is None


def test_a_projects_own_ansible_cfg_gets_one_warning_naming_its_settings(tmp_path: Path) -> None:
    assert project_config_warning(tmp_path) is None
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\nvars_plugins = ./plugins\nvars_plugins_enabled = host_group_vars,evil\n"
    )
    warning = project_config_warning(tmp_path)
    assert warning is not None
    assert "defaults.vars_plugins, defaults.vars_plugins_enabled" in warning


PROBE = r"""
import json, os, socket, sys
out = {}
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).sendall(b"leak")
    out["tcp"] = "connected"
except OSError as exc:
    out["tcp"] = type(exc).__name__
out["root_ssh"] = os.path.exists("/root/.ssh")
out["home"] = os.listdir("/home") if os.path.isdir("/home") else None
out["shadow"] = os.path.exists("/etc/shadow")
out["state"] = os.listdir(sys.argv[2])
out["env"] = sorted(os.environ)
try:
    open(sys.argv[3], "w").write("x")
    out["project_write"] = "written"
except OSError as exc:
    out["project_write"] = type(exc).__name__
open(sys.argv[4], "w").write(json.dumps(out))
"""


def test_the_sandbox_has_no_network_no_host_files_and_a_read_only_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".kiln").mkdir(parents=True)
    (project / ".kiln" / "registry.db").write_text("versions")
    run = tmp_path / "run"
    run.mkdir()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    spec = SandboxSpec(
        project=project, hidden=(project / ".kiln",), writable=(run,), env={"LANG": "C.UTF-8"}
    )
    argv = [
        sys.executable,
        "-c",
        PROBE,
        str(port),
        str(project / ".kiln"),
        str(project / "x"),
        str(run / "out.json"),
    ]
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": "from-kilns-environment"}
    subprocess.run(bwrap_argv(spec, argv), check=True, env=env, timeout=60)
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing reached the host's loopback
    listener.close()
    out = json.loads((run / "out.json").read_text())
    assert out["tcp"] == "ConnectionRefusedError"  # the sandbox's own, empty loopback
    assert out["root_ssh"] is False and out["shadow"] is False
    assert out["home"] in (None, [])
    assert out["state"] == []  # kiln's state (registry, logs) hidden
    assert out["project_write"] == "OSError"
    assert out["env"] == ["LANG", "PWD"]  # PWD: bwrap sets it for --chdir
    assert not (project / "x").exists()


def test_runner_events_become_kilns_records() -> None:
    ok = kiln_event(
        {
            "event": "runner_on_ok",
            "event_data": {
                "task": "Install nginx",
                "role": "web",
                "task_path": "/p/roles/web/tasks/main.yml:3",
                "task_action": "ansible.builtin.apt",
                "res": {"changed": True, "msg": "done"},
            },
        }
    )
    assert ok is not None
    assert ok["event"] == "task_result" and ok["status"] == "ok" and ok["changed"] is True
    assert ok["task"] == "web : Install nginx" and ok["path"] == "/p/roles/web/tasks/main.yml:3"
    ignored = kiln_event(
        {"event": "runner_on_failed", "event_data": {"ignore_errors": True, "res": {}}}
    )
    assert ignored is not None and ignored["status"] == "ignored"
    start = kiln_event({"event": "playbook_on_handler_task_start", "event_data": {"task": "h"}})
    assert start == {
        "event": "task_start",
        "handler": True,
        "task": "h",
        "path": "",
        "role": "",
        "action": "",
    }
    stats = kiln_event(
        {
            "event": "playbook_on_stats",
            "event_data": {
                "ok": {"default": 5},
                "changed": {"default": 2},
                "dark": {},
                "failures": {"default": 1},
                "processed": {"default": 1},
            },
        }
    )
    assert stats == {
        "event": "stats",
        "ok": 5,
        "changed": 2,
        "unreachable": 0,
        "failures": 1,
        "ignored": 0,
        "rescued": 0,
        "skipped": 0,
    }
    assert kiln_event({"event": "verbose", "event_data": {}}) is None


def test_a_real_ansible_runner_run_gives_the_records_kiln_reads(tmp_path: Path) -> None:
    import ansible_runner
    from kiln.controller.events import EventWriter

    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: say hello\n      ansible.builtin.debug:\n        msg: hello\n"
        "    - name: fail quietly\n      ansible.builtin.fail:\n        msg: expected\n"
        "      ignore_errors: true\n"
    )
    events = tmp_path / "events.jsonl"
    writer = EventWriter(events, "1")
    ansible_runner.run_command(
        executable_cmd=str(Path(sys.executable).parent / "ansible-playbook"),
        cmdline_args=["-i", "localhost,", "-c", "local", str(playbook)],
        private_data_dir=str(tmp_path / "runner"),
        event_handler=writer,
        quiet=True,
    )
    writer.close()
    records = [json.loads(line) for line in events.read_text().splitlines()]
    results = [(r["task"], r["status"]) for r in records if r["event"] == "task_result"]
    assert results == [("say hello", "ok"), ("fail quietly", "ignored")]
    assert records[-1]["event"] == "stats" and records[-1]["ignored"] == 1


def test_the_sandbox_gets_the_files_packer_names_not_their_directories(tmp_path: Path) -> None:
    from kiln.controller.entry import _file_arguments

    args = [
        "-e",
        f"ansible_ssh_private_key_file={tmp_path}/ansible-key1",
        "-e",
        f"@{tmp_path}/secrets/secrets.json",
        "-i",
        f"{tmp_path}/packer-provisioner-ansible1",
        "--private-key",
        f"{tmp_path}/key2",
        "-e",
        "ansible_host=abc",
        "play.yml",
    ]
    assert _file_arguments(args) == [
        tmp_path / "ansible-key1",
        tmp_path / "secrets" / "secrets.json",
        tmp_path / "packer-provisioner-ansible1",
        tmp_path / "key2",
    ]


def test_a_failed_tasks_place_printed_by_kiln_ansible_reaches_the_failure_report() -> None:
    from kiln.controller.events import FAILED_TASK_AT
    from kiln.molecule_output import StepTracker

    tracker = StepTracker()
    for line in (
        "TASK [broken : Fail on purpose] *****",
        'fatal: [instance]: FAILED! => {"msg": "non-zero return code"}',
        f"{FAILED_TASK_AT}/p/roles/broken/tasks/main.yml:19",
        "PLAY RECAP *****",
    ):
        tracker.feed(line)
    assert tracker.detail[0] == "TASK [broken : Fail on purpose]"
    assert f"{FAILED_TASK_AT}/p/roles/broken/tasks/main.yml:19" in tracker.detail


def test_a_failed_tasks_message_reaches_the_report_when_runner_drops_the_fatal_line() -> None:
    """Seen in CI: runner's printed output held the TASK header and the recap, not the fatal
    line; kiln-ansible's own line, from runner's event, still carries the message."""
    from kiln.controller.inside import _with_failed_task_lines
    from kiln.molecule_output import StepTracker

    handle = _with_failed_task_lines(lambda event: True)
    event = {
        "event": "runner_on_failed",
        "event_data": {
            "task_path": "/p/roles/motd/molecule/default/verify.yml:7",
            "res": {"msg": "the motd does not name production", "assertion": "x", "stderr": ""},
        },
    }
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert handle(event) is True
        handle({**event, "event_data": {**event["event_data"], "ignore_errors": True}})
    printed = out.getvalue().splitlines()
    assert printed == [
        "kiln: failed task at /p/roles/motd/molecule/default/verify.yml:7"
        " => the motd does not name production"
    ]
    tracker = StepTracker()
    for line in ("TASK [Assert that the motd names the production site.]", *printed):
        tracker.feed(line)
    assert any("the motd does not name production" in line for line in tracker.detail)
