"""A watchdog that ends a bake's processes and builders when kiln itself dies, kill -9 included.

kiln starts one around each packer run and each test instance, in a session of its own. It reads a
pipe that only kiln can write to: EOF without "done" means kiln is gone, and the watchdog ends what
its lease names. The script (``python -P watchdog.py LEASE``) imports only the standard library at
start, so it costs a few milliseconds. kiln's own reaping is imported only once kiln has died.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Set in the environment of every process a lease covers (packer passes it on to its plugins,
#: Ansible, docker clients and qemu): the watchdog finds them by it, from their first instant.
LEASE_ENV = "KILN_LEASE"
DONE = b"done\n"
#: SIGTERM first: packer, interrupted, removes its builder itself; SIGKILL after this.
TERM_GRACE_S = 3.0
#: How long the watchdog keeps reaping after the kill: a `docker run` sent to the engine before
#: the kill still creates its container, its client gone (node.REAP_SETTLE_S, for the same).
SETTLE_S = 5.0
INTERVAL_S = 0.5
EXIT_WAIT_S = 5.0


@dataclass(frozen=True)
class Lease:
    """What a watchdog ends when kiln dies without saying "done".

    The processes carrying the token in their environment, the process groups they lead and
    their descendants; a target's builders of one bake; containers by name or label.
    """

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    target: str | None = None
    role: str | None = None
    bake_id: str | None = None
    containers: tuple[str, ...] = ()
    #: Containers by label (`key=value`), for those whose names kiln does not choose (Molecule's).
    labels: tuple[str, ...] = ()
    #: Where the watchdog says what it ended; it writes only when kiln died.
    log: str | None = None

    @property
    def env(self) -> dict[str, str]:
        """Add to the environment of the processes the lease covers."""
        return {LEASE_ENV: self.token}

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Lease:
        data = json.loads(text)
        listed = {key: tuple(data.get(key, ())) for key in ("containers", "labels")}
        return cls(**{**data, **listed})


@contextmanager
def watchdog(lease: Lease) -> Iterator[Lease]:
    """Watch over lease while the block runs; leaving the block by any path tells it "done".

    Its stdin is the pipe: Python opens it close-on-exec and Popen closes every other descriptor,
    so neither packer nor anything else kiln starts holds the write end and delays the EOF.
    """
    try:
        proc = subprocess.Popen(
            [sys.executable, "-P", str(Path(__file__).resolve()), lease.to_json()],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # neither Ctrl-C nor a closed terminal reaches it
        )
    except OSError as exc:
        from kiln.errors import BuildError

        raise BuildError(f"cannot start kiln's watchdog ({sys.executable}): {exc}") from exc
    assert proc.stdin is not None
    try:
        yield lease
    finally:
        with suppress(OSError):  # it died already: nothing to tell
            proc.stdin.write(DONE)
            proc.stdin.close()
        try:
            proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the watchdog's side ------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    """One live process as /proc shows it."""

    pid: int
    ppid: int
    pgid: int
    leased: bool


def process_table(token: str, proc_root: Path = Path("/proc")) -> dict[int, Proc]:
    """Every live process this user may read, marked when its environment holds the lease."""
    marker = f"{LEASE_ENV}={token}".encode()
    table: dict[int, Proc] = {}
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        try:
            stat = (proc_root / entry.name / "stat").read_bytes()
            environ = (proc_root / entry.name / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        # The command name may hold spaces and parentheses: the fields follow its last ')'.
        state, ppid, pgid = stat[stat.rindex(b")") + 2 :].split()[:3]
        if state == b"Z":  # a zombie's exit is only waiting to be collected
            continue
        pid = int(entry.name)
        table[pid] = Proc(pid, int(ppid), int(pgid), marker in environ.split(b"\0"))
    return table


def doomed(table: Mapping[int, Proc], spare: set[int]) -> set[int]:
    """The leased processes, members of the groups they lead, and all their descendants.

    Only groups a leased process leads (packer's own session): a leased process in another
    group (kiln's, shared with a `| tee` of the shell) does not doom that group.
    """
    leased = {p.pid for p in table.values() if p.leased}
    found = leased | {p.pid for p in table.values() if p.pgid in leased}
    while True:
        children = {p.pid for p in table.values() if p.ppid in found} - found
        if not children:
            return found - spare
        found |= children


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(lease: Lease) -> list[str]:
    """Remove the lease's builders and containers through kiln's own reaping; returns them."""
    removed: list[str] = []
    if lease.target is not None and lease.role is not None:
        from kiln.targets import get_target

        builder = get_target(lease.target).builder()
        removed += builder.reap_builders(role=lease.role, bake_id=lease.bake_id)
    if lease.containers:
        from kiln.docker import remove_instance

        for name in lease.containers:  # a name that never came to be fails, harmlessly
            remove_instance(name)
    if lease.labels:
        from kiln import tools

        filters = [f"--filter=label={label}" for label in lease.labels]
        found = tools.docker("ps", "--all", "--quiet", *filters, timeout=60).split()
        if found:
            tools.run(["docker", "rm", "--force", "--volumes", *found], check=False)
        removed += found
    return removed


def end_lease(
    lease: Lease,
    say: Callable[[str], None],
    *,
    grace_s: float = TERM_GRACE_S,
    settle_s: float = SETTLE_S,
) -> None:
    """kiln died: end the lease's processes (SIGTERM, then SIGKILL) and reap its builders."""
    spare = {os.getpid()}
    victims = doomed(process_table(lease.token), spare)
    say(f"kiln is gone: SIGTERM to {sorted(victims)}")
    _signal_all(victims, signal.SIGTERM)
    _try_reap(lease, say)
    deadline = time.monotonic() + grace_s
    while victims and time.monotonic() < deadline:
        time.sleep(0.1)
        victims &= set(process_table(lease.token))
    settled = time.monotonic() + settle_s
    while True:
        # Again each round: a process may have been started (or reparented) since the last look.
        victims |= doomed(process_table(lease.token), spare)
        if victims:
            say(f"SIGKILL to {sorted(victims)}")
            _signal_all(victims, signal.SIGKILL)
            victims = set()
        _try_reap(lease, say)
        if time.monotonic() >= settled:
            return
        time.sleep(INTERVAL_S)


def _try_reap(lease: Lease, say: Callable[[str], None]) -> None:
    try:
        removed = _reap(lease)
    except Exception:  # a broken engine must not stop the killing
        say(traceback.format_exc())
        return
    if removed:
        say(f"removed {' '.join(removed)}")


def main(argv: list[str]) -> int:
    """Wait for kiln's "done"; at EOF without it, end the lease."""
    lease = Lease.from_json(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.stdin.buffer.read() == DONE:
        os._exit(0)  # at once: kiln waits for this exit, and there is nothing to tidy
    # kiln's lib directory: `python -P` left the script's own directory off sys.path on purpose,
    # since kiln's module files there would shadow packages of the same names (docker, tasks).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    def say(text: str) -> None:
        if lease.log is not None:
            with suppress(OSError), open(lease.log, "a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%H:%M:%S')} watchdog: {text}\n")

    end_lease(lease, say)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
