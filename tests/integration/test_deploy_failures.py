"""Deploy failures against the real engine: what is left running when a deploy goes wrong.

Proven here with real images baked by kiln (web v1 "Hello from kiln", web v2 "v2"), the real
Docker engine and real health checks, through the real `invoke deploy`:
- a health check failing on the second new instance of a rolling deploy of 3 puts the removed
  old server back: three v1 servers serve, no v2 container is left, and at no sampled moment did
  fewer than three serve;
- a blue-green deploy whose green side fails leaves no green container and the blue ones serving;
- Ctrl-C (SIGINT to the deploy's process group, as a terminal sends it) while the first new
  instance boots exits 130, removes it and leaves the old servers untouched;
- Ctrl-C inside the `docker stop` of the first replaced server keeps the new instance that took
  its place: three still serve (one v2, two v1: an interrupted rolling deploy keeps what it
  swapped, by design); nothing half-started is left, at most the old one it was stopping,
  stopped (before the fix in deploy.py that this test came with, the new one was removed and
  only two served);
- a published port held by another process fails the deploy with a message naming the port,
  leaves nothing behind and does not touch the old servers; when the clash hits the second new
  instance, the server the first one replaced is put back, as after a failed health check
  (before the same fix, the deploy failed with one v2 server left among the v1 ones);
- scaling 3 replicas down to 1 leaves exactly one server, serving the channel's version;
- the capacity promise, "never fewer instances serving than when the deploy began", holds when
  measured by sampling every server's page from the host during a rolling deploy of 3;
- an image whose tag was moved to another image, and a version whose parent was revoked, are
  refused before anything starts.

Only one thing is staged: which instance is unhealthy. A test's health check also requires a
verdict file that a watcher thread writes into each new container (`ok`, or `sick` for the one
instance chosen to fail), because no real fault makes exactly the second new instance of an
image fail. The check is otherwise the default one (the page on 127.0.0.1:80), run by kiln with
`docker exec`; kiln needs no change for it.

One sandbox (a clone of the session's baked one, plus v2) serves the whole module; each test
first brings the servers into the state it starts from.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from conftest import Sandbox, clone_sandbox
from kiln import deploy as kd
from kiln.registry import Deployment, actor
from test_deploy_servers import free_port_range

pytestmark = pytest.mark.integration

OLD_TITLE = "<title>Hello from kiln</title>"
NEW_TITLE = "<title>v2</title>"
PORT_SPAN = 24  # ports the module's deploys publish on, from its base port up
VERDICT_FILE = "/run/kiln-verdict"  # /run is a tmpfs: the verdict never shows as drift
PAGE = "import urllib.request as u; u.urlopen('http://127.0.0.1/', timeout=2).read()"
VERDICT_CHECK = (
    "sh",
    "-c",
    f'v=$(cat {VERDICT_FILE} 2>/dev/null); [ "$v" = ok ] || {{ echo "verdict: ${{v:-none}}"; '
    f'exit 1; }}; exec python3 -c "{PAGE}"',
)
# Long enough for a healthy instance to boot on a loaded 2-core machine; the sick one waits it out.
VERDICT_TIMEOUT_S = 30
DEFAULT_CHECK_LINE = "health_check=HealthCheck(),"


@dataclass
class Deployed:
    name: str
    cid: str
    version: str
    state: str
    port: int | None


@pytest.fixture(scope="module")
def box(baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("deployfail"))  # web v1
    try:
        sandbox.set_web_variables(web_title="v2")
        # The acceptance gate is not what this module tests: record v2 untested, then tested.
        sandbox.invoke("bake", "web", "--skip-tests", check=True)
        with sandbox.registry() as registry:
            assert [v.version for v in registry.history("web")] == [2, 1]
            for number in (1, 2):
                registry.set_status("web", number, "tested")
            with registry.transaction() as tx:
                for channel, number in (("stable", 1), ("prod", 2)):
                    tx.set_channel(
                        role="web",
                        channel=channel,
                        version=number,
                        action="promote",
                        actor=actor(),
                    )
        yield sandbox
    finally:
        leftovers = sandbox.docker(
            "ps", "-aq", "--filter", f"label={kd.LABEL_NAMESPACE}={sandbox.namespace}", check=False
        ).split()
        if leftovers:
            subprocess.run(["docker", "rm", "-f", "-v", *leftovers], capture_output=True)
        sandbox.cleanup()


@pytest.fixture(scope="module")
def port() -> int:
    """The first of PORT_SPAN free ports on 127.0.0.1: every deploy of the module publishes."""
    return free_port_range(PORT_SPAN)


# -- helpers ----------------------------------------------------------------------------------
def deployed(box: Sandbox, *, running_only: bool = False) -> dict[str, Deployed]:
    """Every container of the sandbox's deploys (by label), oldest first."""
    out = box.docker(
        "ps",
        *(() if running_only else ("-a",)),
        "--filter",
        f"label={kd.LABEL_NAMESPACE}={box.namespace}",
        "--format",
        '{{.Names}}\t{{.ID}}\t{{.Label "kiln.deploy.version"}}\t{{.State}}\t{{.Ports}}',
    )
    found: dict[str, Deployed] = {}
    for line in reversed(out.splitlines()):  # docker ps lists the newest first
        name, cid, version, state, ports = [*line.split("\t"), ""][:5]
        match = re.search(r"127\.0\.0\.1:(\d+)->80/tcp", ports)
        found[name] = Deployed(name, cid, version, state, int(match.group(1)) if match else None)
    return found


def fetch(port: int | None) -> str | None:
    """The page served on 127.0.0.1:port, or None if nothing serves it."""
    if port is None:
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as reply:
            return reply.read().decode() if reply.status == 200 else None
    except OSError:
        return None


def image_containers(box: Sandbox, version: int) -> list[str]:
    """Every container of any kind started from the sandbox's image of web `version`."""
    return box.docker(
        "ps", "-aq", "--filter", f"ancestor={box.image('web', version)}", check=False
    ).split()


def ensure(box: Sandbox, channel: str, replicas: int, port: int) -> dict[str, Deployed]:
    """Bring the servers to `replicas` published instances of channel's version."""
    box.invoke(
        "deploy",
        "web",
        "--channel",
        channel,
        "--replicas",
        str(replicas),
        "--port",
        str(port),
        check=True,
    )
    now = deployed(box)
    if any(s.port is None for s in now.values()):  # an earlier deploy published nothing
        box.invoke(
            "deploy",
            "web",
            "--channel",
            channel,
            "--replicas",
            str(replicas),
            "--port",
            str(port),
            "--recreate",
            check=True,
        )
        now = deployed(box)
    assert len(now) == replicas and all(s.state == "running" for s in now.values())
    return now


def assert_serving(servers: dict[str, Deployed], title: str) -> None:
    for server in servers.values():
        assert server.state == "running", server
        assert title in (fetch(server.port) or ""), f"{server.name} does not serve {title}"


def last_deployment(box: Sandbox) -> Deployment:
    with box.registry() as registry:
        return registry.deployments("web")[0]


@contextmanager
def health_check(box: Sandbox, command: tuple[str, ...], timeout_s: float) -> Iterator[None]:
    """The role's health check replaced in the sandbox's tasks.py while the block runs."""
    tasks = box.root / "tasks.py"
    original = tasks.read_text()
    changed = original.replace(
        DEFAULT_CHECK_LINE,
        f"health_check=HealthCheck(command={command!r}, timeout_s={timeout_s}, interval_s=0.5),",
    )
    assert changed != original
    tasks.write_text(changed)
    try:
        yield
    finally:
        tasks.write_text(original)


@dataclass
class Verdicts:
    """Writes VERDICT_FILE into every new deployed container: `sick` for the `nth` one started
    from `version`, `ok` for all others (old versions put back included)."""

    box: Sandbox
    version: str
    nth: int
    known: set[str] = field(default_factory=set)
    decided: dict[str, str] = field(default_factory=dict)
    of_version: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def sick(self) -> str | None:
        return next((n for n, v in self.decided.items() if v == "sick"), None)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for name, server in deployed(self.box).items():
                if name in self.known or name in self.decided:
                    continue
                if server.version == self.version and name not in self.of_version:
                    self.of_version.append(name)
                position = self.of_version.index(name) + 1 if name in self.of_version else 0
                verdict = "sick" if position == self.nth else "ok"
                written = subprocess.run(
                    ["docker", "exec", name, "sh", "-c", f"echo {verdict} > {VERDICT_FILE}"],
                    capture_output=True,
                    check=False,
                )
                if written.returncode == 0:  # not running yet: the next round tries again
                    self.decided[name] = verdict

    @contextmanager
    def watching(self) -> Iterator[Verdicts]:
        self.known = set(deployed(self.box))  # servers already there keep their state
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=30)


@dataclass
class Sample:
    serving: int
    versions: tuple[str, ...]


@dataclass
class CapacitySampler:
    """Counts the servers whose page answers on their published port, over and over.

    A sample counts only if the set of running servers was the same before and after it: a
    server stopped (or started) half way through a sample would make it count a moment that
    never existed. Old servers are fetched before new ones, the order in which kiln swaps them.
    """

    box: Sandbox
    samples: list[Sample] = field(default_factory=list)
    discarded: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> Sample | None:
        before = deployed(self.box, running_only=True)
        pages = {name: fetch(server.port) for name, server in before.items()}
        after = deployed(self.box, running_only=True)
        if set(after) != set(before):
            return None
        serving = [before[name].version for name, page in pages.items() if page is not None]
        return Sample(len(serving), tuple(sorted(serving)))

    def run(self) -> None:
        while not self.stop.is_set():
            taken = self.sample()
            if taken is None:
                self.discarded += 1
            else:
                self.samples.append(taken)

    @contextmanager
    def watching(self) -> Iterator[CapacitySampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=60)

    @property
    def minimum(self) -> int:
        return min(s.serving for s in self.samples)


def blue_green(port: int) -> tuple[str, ...]:
    return ("--port", str(port), "--strategy", "blue-green")


def deploy_cli(box: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return box.invoke("deploy", "web", *args, timeout=600)


def start_deploy(box: Sandbox, *args: str) -> subprocess.Popen[str]:
    """`invoke deploy web ARGS` in a process group of its own, which a test can Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "deploy", "web", *args],
        cwd=box.root,
        env=box.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C as a terminal sends it, to the whole process group (docker children included)."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# -- tests ------------------------------------------------------------------------------------
def test_a_health_check_failing_on_the_second_new_instance_puts_the_old_servers_back(
    box: Sandbox, port: int
) -> None:
    before = ensure(box, "stable", 3, port)
    verdicts = Verdicts(box, version="2", nth=2)
    sampler = CapacitySampler(box)
    with (
        health_check(box, VERDICT_CHECK, VERDICT_TIMEOUT_S),
        verdicts.watching(),
        sampler.watching(),
    ):
        failed = deploy_cli(box, "--channel", "prod", "--replicas", "3", "--port", str(port))

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    new = verdicts.of_version
    assert len(new) == 2 and verdicts.decided[new[0]] == "ok", verdicts.decided
    assert verdicts.sick == new[1]
    assert (
        f"instance {new[1]} did not pass its health check within {VERDICT_TIMEOUT_S} s"
        in failed.stderr
    )
    assert "verdict: sick" in failed.stderr
    # The first new instance had taken the place of the oldest server: that one came back.
    after = deployed(box)
    assert len(after) == 3, after
    assert {s.version for s in after.values()} == {"1"}
    assert_serving(after, OLD_TITLE)
    kept = set(before) & set(after)
    assert kept == set(list(before)[1:]), "the two old servers never removed are the same ones"
    (restored,) = set(after) - set(before)
    assert re.fullmatch(rf"{box.namespace}-web-v1-[0-9a-f]{{6}}", restored)
    assert verdicts.decided.get(restored) == "ok"
    assert image_containers(box, 2) == []
    serving_now = failed.stderr.split("serving now: ")[1].splitlines()[0]
    assert sorted(serving_now.split(", ")) == sorted(after)
    record = last_deployment(box)
    assert (record.result, record.version) == ("failed", 2)
    # Rolling back kept the promise too: never fewer than three serving.
    assert len(sampler.samples) >= 10 and sampler.minimum == 3, sampler.samples


def test_a_blue_green_deploy_whose_green_side_fails_leaves_blue_serving(
    box: Sandbox, port: int
) -> None:
    blue = ensure(box, "stable", 3, port)
    verdicts = Verdicts(box, version="2", nth=2)
    with health_check(box, VERDICT_CHECK, VERDICT_TIMEOUT_S), verdicts.watching():
        failed = deploy_cli(box, "--channel", "prod", "--replicas", "3", *blue_green(port))

    assert failed.returncode == 1, failed.stdout + failed.stderr
    green = verdicts.of_version
    assert len(green) == 3 and verdicts.sick == green[1], verdicts.decided
    assert f"instance {green[1]} did not pass its health check" in failed.stderr
    assert image_containers(box, 2) == []  # the healthy green ones went too
    after = deployed(box)
    assert {n: s.cid for n, s in after.items()} == {n: s.cid for n, s in blue.items()}
    assert_serving(after, OLD_TITLE)
    assert last_deployment(box).result == "failed"


def test_ctrl_c_during_a_deploy_exits_130_and_leaves_no_half_started_server(
    box: Sandbox, port: int
) -> None:
    before = ensure(box, "stable", 3, port)
    proc = start_deploy(box, "--channel", "prod", "--replicas", "3", "--port", str(port))
    try:
        # The first new instance exists and is booting: that is the deploy half way through it.
        wait_for(lambda: bool(image_containers(box, 2)), 120, "the first v2 container")
    finally:
        out, err = interrupt(proc)

    assert proc.returncode == 130, out + err
    assert "kiln: interrupted" in err and "Traceback" not in err
    after = deployed(box)
    assert {n: s.cid for n, s in after.items()} == {n: s.cid for n, s in before.items()}
    assert_serving(after, OLD_TITLE)
    assert image_containers(box, 2) == []
    time.sleep(3)  # a `docker run` cut short must not create its container after the cleanup
    assert image_containers(box, 2) == []
    record = last_deployment(box)
    assert (record.result, record.version) == ("interrupted", 2)


def test_a_port_held_by_another_process_fails_precisely_and_leaves_nothing(
    box: Sandbox, port: int
) -> None:
    before = ensure(box, "stable", 3, port)
    taken = port + PORT_SPAN // 2  # above the module's servers, so kiln's first pick
    assert all(s.port != taken for s in before.values())
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        failed = deploy_cli(box, "--channel", "prod", "--replicas", "3", "--port", str(taken))

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    match = re.search(
        rf"kiln: deploy of web v2 \(channel prod\) stopped: could not start "
        rf"({box.namespace}-web-v2-[0-9a-f]{{6}}) from "
        rf"{re.escape(box.image('web', 2))}: docker run",
        failed.stderr,
    )
    assert match, failed.stderr
    assert f"127.0.0.1:{taken}" in failed.stderr and "address already in use" in failed.stderr
    assert image_containers(box, 2) == []
    after = deployed(box)
    assert {n: s.cid for n, s in after.items()} == {n: s.cid for n, s in before.items()}
    assert_serving(after, OLD_TITLE)
    record = last_deployment(box)
    assert (record.result, record.version) == ("failed", 2)
    assert match.group(1) in str(record.detail)


def test_a_rolling_deploy_of_three_never_has_fewer_than_three_serving(
    box: Sandbox, port: int
) -> None:
    before = ensure(box, "stable", 3, port)
    sampler = CapacitySampler(box)
    started = time.monotonic()
    with sampler.watching():
        rolled = deploy_cli(box, "--channel", "prod", "--replicas", "3", "--port", str(port))
    took = time.monotonic() - started

    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    after = deployed(box)
    assert len(after) == 3 and set(after).isdisjoint(before)
    assert_serving(after, NEW_TITLE)
    versions = {s.versions for s in sampler.samples}
    # The samples span the whole roll: 3 old, each mix of old and new, then 3 new.
    assert {("1", "1", "1"), ("1", "1", "2"), ("1", "2", "2"), ("2", "2", "2")} <= versions, (
        versions
    )
    assert sampler.minimum == 3, [s.serving for s in sampler.samples]
    print(
        f"\nrolling deploy of 3 in {took:.1f} s: {len(sampler.samples)} samples "
        f"({sampler.discarded} discarded), fewest serving {sampler.minimum}"
    )


def test_scaling_three_servers_down_to_one_leaves_exactly_one_serving(
    box: Sandbox, port: int
) -> None:
    before = ensure(box, "prod", 3, port)
    scaled = deploy_cli(box, "--channel", "stable", "--replicas", "1", "--port", str(port))
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr

    after = deployed(box)
    assert len(after) == 1, after
    (server,) = after.values()
    assert server.version == "1" and server.name not in before
    assert_serving(after, OLD_TITLE)
    assert image_containers(box, 2) == []  # the three replaced servers are removed, not stopped
    record = last_deployment(box)
    assert (record.result, record.replicas) == ("succeeded", 1)


def test_a_port_clash_on_the_second_new_instance_puts_the_replaced_server_back(
    box: Sandbox, port: int
) -> None:
    before = ensure(box, "stable", 3, port)
    base = port + PORT_SPAN // 2
    # kiln publishes the first new instance on base and the second on base + 1.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 1))
        holder.listen()
        failed = deploy_cli(box, "--channel", "prod", "--replicas", "3", "--port", str(base))

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"127.0.0.1:{base + 1}" in failed.stderr and "address already in use" in failed.stderr
    assert image_containers(box, 2) == []
    after = deployed(box)
    assert len(after) == 3 and {s.version for s in after.values()} == {"1"}, after
    assert set(before) - set(after) == {next(iter(before))}  # the one replaced came back anew
    assert_serving(after, OLD_TITLE)
    assert last_deployment(box).result == "failed"


def test_ctrl_c_while_an_old_server_stops_keeps_three_serving(box: Sandbox, port: int) -> None:
    before = ensure(box, "stable", 3, port)
    oldest = next(iter(before.values()))
    # The engine reports `kill` when `docker stop` signals the oldest server; its systemd then
    # takes seconds to shut down, so the interrupt lands inside `docker stop`.
    events = subprocess.Popen(
        ["docker", "events", "--filter", f"container={oldest.name}", "--filter", "event=kill"],
        stdout=subprocess.PIPE,
        text=True,
    )
    proc = start_deploy(box, "--channel", "prod", "--replicas", "3", "--port", str(port))
    try:
        assert events.stdout is not None
        ready, _, _ = select.select([events.stdout], [], [], 300)
        assert ready and events.stdout.readline(), f"{oldest.name} was never stopped"
    finally:
        out, err = interrupt(proc)
        events.kill()
        events.wait()

    assert proc.returncode == 130, out + err
    assert "kiln: interrupted" in err and "Traceback" not in err
    # The engine finishes the stop it had begun: the oldest goes down on its own.
    wait_for(lambda: oldest.name not in deployed(box, running_only=True), 60, "the stop")
    after = deployed(box)
    running = {n: s for n, s in after.items() if s.state == "running"}
    assert len(running) >= 3, after
    assert_serving(running, "<title>")
    # The new instance that had taken the oldest one's place is kept. The oldest may be left
    # stopped, not removed (the interrupt came inside `docker stop`); the next deploy removes it.
    (new,) = (s for s in running.values() if s.version == "2")
    assert NEW_TITLE in (fetch(new.port) or "")
    stopped = {n: s.state for n, s in after.items() if n not in running}
    assert stopped.items() <= {oldest.name: "exited"}.items(), stopped
    record = last_deployment(box)
    assert record.result == "interrupted"
    assert f"new instances kept: {new.name}" in str(record.detail)


def test_a_retagged_image_and_a_revoked_parent_are_refused_before_anything_starts(
    baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory, port: int
) -> None:
    """On a fresh clone (web v1 on base v1, tested): the image tag moved to another image, then
    the parent revoked. Each deploy is refused with its reason, is recorded as refused and
    starts nothing."""
    box = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("refusals"))
    try:
        with box.registry() as registry, registry.transaction() as tx:
            tx.set_channel(role="web", channel="stable", version=1, action="promote", actor=actor())
        ref = box.image("web", 1)
        recorded = box.docker("image", "inspect", "--format", "{{.Id}}", ref)
        box.docker("tag", box.image("base", 1), ref)  # the tag now names another image
        args = ("--channel", "stable", "--replicas", "1", "--port", str(port))

        retagged = deploy_cli(box, *args)

        assert retagged.returncode == 1, retagged.stdout + retagged.stderr
        assert f"web v1's image {ref} was recorded as {recorded[:19]}" in retagged.stderr
        assert f"`docker tag {recorded} {ref}` puts the tag back" in retagged.stderr
        assert deployed(box) == {} and last_deployment(box).result == "refused"

        box.docker("tag", recorded, ref)
        box.invoke("revoke", "base", "1", "--reason", "a bad CA bundle", check=True)

        revoked = deploy_cli(box, *args)

        assert revoked.returncode == 1, revoked.stdout + revoked.stderr
        assert "revoked parent" in revoked.stderr
        assert deployed(box) == {} and last_deployment(box).result == "refused"
    finally:
        box.cleanup()
