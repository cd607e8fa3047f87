"""A leak hunt: secrets printed carelessly by real bakes are found nowhere, in any encoding.

Two secrets of 40 random characters with quotes, backslashes, %, $, spaces, commas and non-ASCII
letters. An env secret is printed carelessly by a role (debug output, a task name, a failing
command's output, in a bake that ignores the failure and in one that fails), and written in each
of its encodings to a root-only file of the image with no_log: that file is the positive control
of the image scan. A file secret reaches its image only through a no_log task; while that bake
runs, a thread watches the 0600 extra-vars file it travels in (on a tmpfs, in a 0700
directory). Every file under `.kiln/` and `packer/`, each image's filesystem (`docker export`),
config (`docker inspect`) and `docker history --no-trunc` are then searched for each secret raw,
JSON-escaped (with and without ensure_ascii), as a Python repr, shell-quoted, URL-encoded and
base64-encoded.

Three leaks found this way are fixed and each has its test below: the progress display printed
task names raw (events are now redacted where kiln reads them), Ansible's module arguments stayed
in the image's journal (ANSIBLE_NO_TARGET_SYSLOG, and the seal empties the journal), and a secret
holding a backslash and an n escaped redaction in packer.log (lines are redacted before decoding).
"""

from __future__ import annotations

import base64
import json
import os
import random
import shlex
import stat
import string
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Sandbox, make_sandbox
from kiln.secret_files import FILE_NAME, PREFIX, memory_root
from test_secrets import exported_files

pytestmark = pytest.mark.integration

ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "json": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "json-ascii": lambda s: json.dumps(s, ensure_ascii=True)[1:-1],
    "repr": repr,
    "shell": shlex.quote,
    "url": urllib.parse.quote,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
}


def make_secret(rng: random.Random) -> str:
    """40 characters: every kind the issue names, the rest random, no Jinja2 braces or newline.

    Starts with a letter and ends with a digit (a file secret loses a trailing newline when read),
    and holds no backslash before an n or r: packer's machine-readable output writes a newline as
    those two characters without escaping backslashes, so such a secret comes back split over two
    lines (see BACKSLASH_N below).
    """
    required = list("\"\\'%$ ,éßЖ漢")
    pool = string.ascii_letters + string.digits + "\"\\'%$ ,-_:;!@&*()=+?<>[]|~`^éßЖ漢ñ"
    while True:
        middle = required + [rng.choice(pool) for _ in range(38 - len(required))]
        rng.shuffle(middle)
        secret = rng.choice(string.ascii_letters) + "".join(middle) + rng.choice(string.digits)
        if "\\n" not in secret and "\\r" not in secret:
            return secret


SEED = random.SystemRandom().randrange(2**32)  # in the failure messages, to replay a run
RNG = random.Random(SEED)
TOKEN = make_secret(RNG)  # Secret(env=...)
PASSWORD = make_secret(RNG)  # Secret(file=...)
SECRETS = {"token": TOKEN, "password": PASSWORD}
# A third secret, printed by the careless role too, that holds a backslash and an n.
BACKSLASH_N = make_secret(RNG)[:20] + "\\n" + make_secret(RNG)[:18]

CARELESS_TASKS = """\
# On a fast bake Ansible may start before systemd-journal-flush.service has moved the journal
# from /run (not committed) to /var/log/journal: flush it first, as a booted server has.
- name: Flush the journal to /var/log/journal
  ansible.builtin.command: journalctl --flush
  changed_when: false

- name: Print the token
  ansible.builtin.debug:
    msg: "the token is {{ api_token }}"

- name: Print the other token
  ansible.builtin.debug:
    msg: "the other token is {{ other_token }}"

- name: "Register with token {{ api_token }}"
  ansible.builtin.debug:
    msg: registered

- name: Call the API with the token
  ansible.builtin.shell: |
    printf 'token=%s\\n' {{ api_token | quote }}
    printf 'bad token %s\\n' {{ api_token | quote }} >&2
    exit 3
  changed_when: false
  ignore_errors: "{{ careless_ignore_errors }}"

- name: Keep each encoding of the token (the positive control of the image scan)
  ansible.builtin.copy:
    content: |
      raw {{ api_token }}
      json {{ api_token | to_json(ensure_ascii=False) }}
      json-ascii {{ api_token | to_json }}
      repr {{ '%r' | format(api_token | string) }}
      shell {{ api_token | quote }}
      url {{ api_token | urlencode }}
      base64 {{ api_token | b64encode }}
    dest: /root/kiln-token-encodings
    owner: root
    mode: "0600"
  no_log: true
"""
VAULT_TASKS = """\
# On a fast bake Ansible may start before systemd-journal-flush.service has moved the journal
# from /run (not committed) to /var/log/journal: flush it first, as a booted server has.
- name: Flush the journal to /var/log/journal
  ansible.builtin.command: journalctl --flush
  changed_when: false

- name: Install the database password
  ansible.builtin.copy:
    content: "{{ db_password }}"
    dest: /root/db-password
    owner: root
    group: root
    mode: "0600"
  no_log: true
"""
DEFINITIONS = """
from kiln import Secret, TaskException
token = {
    "api_token": Secret(env="KILN_TEST_TOKEN"), "other_token": Secret(env="KILN_TEST_OTHER"),
}
# The guard refuses a secret in a task name (secret-in-name); this hunt puts one there on purpose.
named = TaskException(
    ansible_role="careless", task="Register with token {{ api_token }}", rule="secret-in-name",
    reason="the leak hunt prints the token in a task name on purpose",
)
for name, ignore in (("careless", True), ("careless-fails", False)):
    project.role(
        name, parent=bookworm, ansible_roles=["careless"], secrets=token, lint_allowed=True,
        variables={"careless_ignore_errors": ignore}, audit_exceptions=[named],
    )
project.role(
    "vault", parent=bookworm, secrets={"db_password": Secret(file="secrets/db-password")},
    lint_allowed=True,
)
"""
TOKEN_FILE = "root/kiln-token-encodings"
PASSWORD_FILE = "root/db-password"
ROLES = ("careless", "careless-fails", "vault")
JOURNAL = "var/log/journal/"


@dataclass
class Watch:
    """What a thread saw of the vault bake's extra-vars file while the bake ran."""

    modes: set[int] = field(default_factory=set)
    directory_modes: set[int] = field(default_factory=set)
    #: The kiln processes whose secret directories to watch, once they are started.
    pids: list[int] = field(default_factory=list)
    owners: set[int] = field(default_factory=set)
    seen_while_packer_ran: int = 0
    polls: int = 0


@dataclass
class Baked:
    sandbox: Sandbox
    runs: dict[str, subprocess.CompletedProcess[str]]
    watch: Watch

    def image(self, role: str) -> str:
        return self.sandbox.image(role, 1)


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baked]:
    sandbox = make_sandbox(tmp_path_factory.mktemp("leaks"))
    for role, tasks in (("careless", CARELESS_TASKS), ("vault", VAULT_TASKS)):
        (sandbox.root / "roles" / role / "tasks").mkdir(parents=True)
        (sandbox.root / "roles" / role / "tasks" / "main.yml").write_text(tasks)
    (sandbox.root / "secrets").mkdir()
    (sandbox.root / "secrets" / "db-password").write_text(PASSWORD + "\n", encoding="utf-8")
    sandbox.write_tasks(extra=DEFINITIONS)
    env = {**sandbox.env(), "KILN_TEST_TOKEN": TOKEN, "KILN_TEST_OTHER": BACKSLASH_N}
    watch = Watch()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_secret_files, args=(sandbox.root, watch, stop))
    try:
        watcher.start()
        # Three bakes at once: the machine waits on docker more than it computes. umask 0, so
        # that the extra-vars file is 0600 because kiln makes it so, not by the umask's grace.
        procs = {role: start_bake(sandbox.root, env, role) for role in ROLES}
        watch.pids.append(procs["vault"].pid)
        runs = {}
        for role, proc in procs.items():
            out, err = proc.communicate(timeout=1800)
            runs[role] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        stop.set()
        watcher.join()
        for role in ("careless", "vault"):
            assert runs[role].returncode == 0, runs[role].stdout + runs[role].stderr
        yield Baked(sandbox, runs, watch)
    finally:
        stop.set()
        sandbox.cleanup()


def start_bake(root: Path, env: dict[str, str], role: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "bake", role, "--skip-tests"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(0),
    )


def secret_files_of(pids: list[int]) -> list[Path]:
    """The secrets.json files of the kiln processes pids, on the tmpfs (kiln.secret_files)."""
    return [
        path
        for pid in pids
        for path in memory_root().glob(f"{PREFIX}*-{pid}-*/{FILE_NAME}")
        if path.parent.name.removeprefix(PREFIX).split("-")[1] == str(pid)
    ]


def watch_secret_files(root: Path, watch: Watch, stop: threading.Event) -> None:
    """Poll for the vault bake's secrets.json; note its mode and whether packer was running."""
    while not stop.is_set():
        watch.polls += 1
        for path in secret_files_of(watch.pids):
            try:
                info = path.stat()
                directory = path.parent.stat()
            except FileNotFoundError:
                continue
            watch.modes.add(stat.S_IMODE(info.st_mode))
            watch.directory_modes.add(stat.S_IMODE(directory.st_mode))
            watch.owners.add(info.st_uid)
            if packer_running_in(root):
                watch.seen_while_packer_ran += 1
        time.sleep(0.05)


def packer_running_in(root: Path) -> bool:
    """Whether a `packer build` process runs with root as its working directory."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            is_build = Path(argv[0].decode()).name == "packer" and argv[1:2] == [b"build"]
            if is_build and (proc / "cwd").resolve() == root.resolve():
                return True
        except (OSError, IndexError, UnicodeDecodeError):
            continue
    return False


def found(data: bytes) -> list[str]:
    """'secret/encoding' for each encoding of each secret that data holds."""
    return [
        f"{name}/{encoding}"
        for name, secret in SECRETS.items()
        for encoding, encode in ENCODINGS.items()
        if encode(secret).encode() in data
    ]


# -- the bakes did what they were meant to ----------------------------------------------------
def test_the_careless_bakes_printed_the_token_where_it_was_told_to(baked: Baked) -> None:
    """Without these, a clean scan would prove nothing: each careless print really ran."""
    log_dir = baked.sandbox.root / ".kiln" / "logs"
    for role in ("careless", "careless-fails"):
        (version_dir,) = (log_dir / role).iterdir()
        log = (version_dir / "packer.log").read_text()
        assert "the token is ********" in log, log[-3000:]
        assert "Register with token ********" in log
        assert "token=********" in log and "bad token ********" in log
    failed = baked.runs["careless-fails"]
    assert failed.returncode == 1
    assert (
        "Ansible task 'careless : Call the API with the token' of role careless failed"
        in failed.stderr
    )
    assert "bad token ********" in failed.stderr
    with baked.sandbox.registry() as registry:
        assert registry.latest("careless-fails") is None
        assert registry.latest("careless") is not None


def test_the_image_scan_finds_every_encoding_where_the_role_put_it(baked: Baked) -> None:
    """The positive control of the image scan: every encoding is found in the no_log file."""
    files = dict(exported_files(baked.image("careless")))
    assert sorted(found(files[TOKEN_FILE])) == sorted(f"token/{e}" for e in ENCODINGS)


def test_a_file_secret_reaches_its_image_only_through_the_no_log_task(baked: Baked) -> None:
    ref = baked.image("vault")
    owner_mode = baked.sandbox.docker(
        "run", "--rm", "--entrypoint", "stat", ref, "-c", "%U %a", f"/{PASSWORD_FILE}"
    )
    assert owner_mode == "root 600"
    content = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "cat", ref, f"/{PASSWORD_FILE}"],
        capture_output=True,
        check=True,
    ).stdout
    assert content.decode() == PASSWORD  # read from the file, without its newline


def test_the_extra_vars_file_was_0600_while_packer_ran(baked: Baked) -> None:
    watch = baked.watch
    assert watch.seen_while_packer_ran > 0, f"not seen in {watch.polls} polls"
    assert watch.modes == {0o600} and watch.directory_modes == {0o700}
    assert watch.owners == {os.getuid()}


def test_the_extra_vars_file_is_gone_after_the_bake(baked: Baked) -> None:
    assert not list((baked.sandbox.root / ".kiln").rglob("secrets.json"))
    assert secret_files_of(baked.watch.pids) == []


# -- the hunt ---------------------------------------------------------------------------------
def test_no_secret_in_any_file_under_kiln_or_packer(baked: Baked) -> None:
    leaks, scanned = [], 0
    for top in (".kiln", "packer"):
        for path in sorted((baked.sandbox.root / top).rglob("*")):
            if path.is_file() and not path.is_symlink():
                scanned += 1
                leaks += [
                    f"{path.relative_to(baked.sandbox.root)}: {f}" for f in found(path.read_bytes())
                ]
    assert (baked.sandbox.root / "packer" / "vault.pkr.hcl").exists()
    assert scanned > 10
    assert leaks == [], f"seed {SEED}"


@pytest.mark.parametrize("role", ["careless", "vault"])
def test_no_secret_in_the_image_filesystem(baked: Baked, role: str) -> None:
    """Every file but the one its role wrote the secret to; the journal is read decoded below."""
    allowed = {"careless": TOKEN_FILE, "vault": PASSWORD_FILE}[role]
    leaks, files = [], 0
    for member, data in exported_files(baked.image(role)):
        files += 1
        if member != allowed and not member.startswith(JOURNAL):
            leaks += [f"/{member}: {f}" for f in found(data)]
    assert files > 1000
    assert leaks == [], f"seed {SEED}"


def journal(ref: str) -> str:
    """The messages of the image's systemd journal: journald compresses long ones on disk.

    journalctl exits non-zero when the directory holds no journal file, which is what a sealed
    image has: that is read as no messages.
    """
    argv = ["journalctl", "--directory", f"/{JOURNAL}", "--no-pager", "--all", "--output", "cat"]
    run = ["docker", "run", "--rm", "--entrypoint", argv[0], ref, *argv[1:]]
    return subprocess.run(run, capture_output=True, text=True, check=False, timeout=120).stdout


@pytest.mark.parametrize("role", ["careless", "vault"])
def test_the_images_journal_keeps_nothing_of_the_bake(baked: Baked, role: str) -> None:
    # Before the fix, every module that was not no_log logged "Invoked with" and its arguments
    # (the careless task's token among them) to the builder's journal, and the image kept it.
    messages = journal(baked.image(role))
    assert "Invoked with" not in messages
    leaking = [line for line in messages.splitlines() if found(line.encode())]
    assert leaking == [], f"seed {SEED}"
    find = ["find", f"/{JOURNAL}", "-name", "*.journal*"]
    files = baked.sandbox.docker(
        "run", "--rm", "--entrypoint", *find[:1], baked.image(role), *find[1:]
    )
    assert files == ""


@pytest.mark.parametrize("role", ["careless", "vault"])
def test_no_secret_in_the_image_config_or_history(baked: Baked, role: str) -> None:
    inspect = baked.sandbox.docker("image", "inspect", baked.image(role))
    history = baked.sandbox.docker("history", "--no-trunc", baked.image(role))
    assert "kiln.fingerprint" in inspect and "/sbin/init" in history
    assert found(inspect.encode()) == [], f"seed {SEED}"
    assert found(history.encode()) == [], f"seed {SEED}"


def test_no_secret_in_what_kiln_printed(baked: Baked) -> None:
    printed = "".join(run.stdout + run.stderr for run in baked.runs.values())
    assert "Print the token" in printed
    leaking = [line for line in printed.splitlines() if found(line.encode())]
    assert leaking == []


def test_a_secret_holding_a_backslash_n_is_masked_in_the_packer_log(baked: Baked) -> None:
    log = (baked.sandbox.root / ".kiln/logs/careless/1/packer.log").read_text()
    assert "the other token is " in log
    halves = BACKSLASH_N.split("\\n")
    forms = {ENCODINGS[e](half) for half in halves for e in ("raw", "json", "json-ascii")}
    assert [form for form in forms if form in log] == []
