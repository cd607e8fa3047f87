"""Secrets reach Ansible through the 0600 extra-vars file only, and nowhere else.

A sandbox role writes the sha256 of a 40-character random token into the image (with no_log).
After two real bakes (plain --verbose, then --force --json --verbose) the raw token is searched
for in every file of the sandbox, the registry, the image's config and history, the image's whole
filesystem and everything kiln printed. The sha256 in the image proves the token was used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import stat
import string
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import Sandbox, make_sandbox
from kiln.hmac_key import key_path

TOKEN = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
TOKEN_BYTES = TOKEN.encode()
TOKEN_SHA256 = hashlib.sha256(TOKEN_BYTES).hexdigest()

VAULT_TASKS = """\
- name: Store a digest of the token
  ansible.builtin.copy:
    content: "{{ api_token | hash('sha256') }}\\n"
    dest: /etc/kiln-token.sha256
    mode: "0644"
  no_log: true
"""
LEAKY_TASKS = """\
- name: Show the token
  ansible.builtin.debug:
    msg: "the token is {{ api_token }}"
"""
DEFINITIONS = """
from kiln import Secret
token = {"api_token": Secret(env="KILN_TEST_TOKEN")}
project.role("vault", parent=bookworm, secrets=token, lint_allowed=True)
project.role("leaky", parent=bookworm, secrets=token, lint_allowed=True)
"""


@dataclass
class Baked:
    sandbox: Sandbox
    outputs: list[str]
    version: int


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baked]:
    sandbox = make_sandbox(tmp_path_factory.mktemp("secrets"))
    for role, tasks in (("vault", VAULT_TASKS), ("leaky", LEAKY_TASKS)):
        (sandbox.root / "roles" / role / "tasks").mkdir(parents=True)
        (sandbox.root / "roles" / role / "tasks" / "main.yml").write_text(tasks)
    sandbox.write_tasks(extra=DEFINITIONS)
    env = {**sandbox.env(), "KILN_TEST_TOKEN": TOKEN}
    outputs: list[str] = []
    try:
        for args in (("--verbose",), ("--force", "--json", "--verbose")):
            proc = subprocess.run(
                [sys.executable, "-m", "invoke", "bake", "vault", *args],
                cwd=sandbox.root, env=env, capture_output=True, text=True, timeout=1800,
                check=False,
            )  # fmt: skip
            outputs += [proc.stdout, proc.stderr]
            assert proc.returncode == 0, proc.stdout + proc.stderr
        with sandbox.registry() as registry:
            latest = registry.latest("vault")
        assert latest is not None
        yield Baked(sandbox, outputs, latest.version)
    finally:
        sandbox.cleanup()


def image(baked: Baked) -> str:
    return baked.sandbox.image("vault", baked.version)


def test_the_token_reached_ansible(baked: Baked) -> None:
    """The positive control: the image holds the token's digest, so the token was used."""
    content = export_file(image(baked), "etc/kiln-token.sha256")
    assert content.decode().strip() == TOKEN_SHA256


def test_not_in_what_kiln_printed(baked: Baked) -> None:
    assert len(baked.outputs) == 4
    json_lines = [json.loads(line) for line in baked.outputs[2].splitlines() if line.strip()]
    assert json_lines, "the --json bake printed nothing"
    for output in baked.outputs:
        assert TOKEN not in output


def test_not_in_any_file_of_the_sandbox(baked: Baked) -> None:
    scanned = 0
    for path in baked.sandbox.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            scanned += 1
            assert TOKEN_BYTES not in path.read_bytes(), f"the token is in {path}"
    state = baked.sandbox.root / ".kiln"
    assert (state / "registry.db").exists() and list((state / "logs" / "vault").rglob("*.log"))
    assert scanned > 20
    # The extra-vars file was deleted after each bake.
    assert not list(state.rglob("secrets.json"))


def test_the_logs_are_0600_in_0700_directories(baked: Baked) -> None:
    """Under the usual umask (022): the modes are kiln's own (kiln.private_files)."""
    logs = baked.sandbox.root / ".kiln" / "logs"
    tree = list(logs.rglob("*"))
    files = [path for path in tree if path.is_file()]
    assert {"packer.log", "ansible-events.jsonl"} <= {path.name for path in files}
    wrong = [
        f"{path.relative_to(logs)} {stat.S_IMODE(path.stat().st_mode):04o}"
        for path in (logs, *tree)
        if stat.S_IMODE(path.stat().st_mode) != (0o600 if path.is_file() else 0o700)
    ]
    assert wrong == []


def test_not_in_the_registry(baked: Baked) -> None:
    path = baked.sandbox.root / ".kiln" / "registry.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        dump = "\n".join(db.iterdump())
    assert "vault" in dump
    assert TOKEN not in dump
    assert TOKEN_SHA256 not in dump  # not even an unkeyed digest


def test_the_fingerprint_records_a_keyed_digest(baked: Baked) -> None:
    with baked.sandbox.registry() as registry:
        version = registry.get("vault", baked.version)
    assert version is not None
    recorded = version.inputs["definition"]["secrets"]["api_token"]
    key = key_path(baked.sandbox.root).read_bytes()  # outside .kiln/: a copy of it has no key
    expected = "hmac-sha256:" + hmac.new(key, TOKEN_BYTES, hashlib.sha256).hexdigest()
    assert recorded == expected
    assert TOKEN_SHA256 not in recorded
    assert key_path(baked.sandbox.root).stat().st_mode & 0o777 == 0o600
    assert not (baked.sandbox.root / ".kiln" / "secret.key").exists()


def test_not_in_the_image_config_or_history(baked: Baked) -> None:
    inspect = baked.sandbox.docker("image", "inspect", image(baked))
    history = baked.sandbox.docker("history", "--no-trunc", image(baked))
    assert "kiln.fingerprint" in inspect and history
    assert TOKEN not in inspect
    assert TOKEN not in history


def test_not_in_the_image_filesystem(baked: Baked) -> None:
    found_digest = False
    files = 0
    for member, data in exported_files(image(baked)):
        files += 1
        assert TOKEN_BYTES not in data, f"the token is in /{member}"
        found_digest = found_digest or TOKEN_SHA256.encode() in data
    assert files > 1000
    assert found_digest  # the scan does see file contents


def test_the_audit_warns_about_a_task_without_no_log(baked: Baked) -> None:
    proc = baked.sandbox.invoke("audit", "--role", "leaky", "--json")
    assert proc.returncode == 0, proc.stderr  # a warning does not stop a bake
    findings = json.loads(proc.stdout)["roles"]["leaky"]["findings"]
    (finding,) = findings
    assert finding["rule"] == "secret-no-log"
    assert finding["severity"] == "warning"
    assert finding["file"] == "roles/leaky/tasks/main.yml" and finding["line"] == 1
    assert "uses secret api_token without no_log: true" in finding["message"]
    clean = baked.sandbox.invoke("audit", "--role", "vault", "--json")
    assert json.loads(clean.stdout)["roles"]["vault"]["findings"] == []


# -- docker export, streamed ----------------------------------------------------------------
def exported_files(ref: str) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every regular file of ref's filesystem, from a stopped container."""
    container = subprocess.run(
        ["docker", "create", "--label", "kiln.purpose=test-export", ref, "/bin/true"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        with subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    if member.isfile():
                        handle = tar.extractfile(member)
                        assert handle is not None
                        yield member.name, handle.read()
            proc.stdout.read()
        assert proc.returncode == 0
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def export_file(ref: str, name: str) -> bytes:
    for member, data in exported_files(ref):
        if member == name:
            return data
    raise AssertionError(f"{name} is not in {ref}")
