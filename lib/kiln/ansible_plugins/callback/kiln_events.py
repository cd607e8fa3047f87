"""kiln's Ansible callback: what only Ansible's own objects know, as JSON lines for kiln.

Task starts, results and the recap come from ansible-runner's events (kiln.controller.events).
This callback stays for what runner's events do not carry: the hosts of the inventory Ansible
parsed (kiln refuses to go on unless it is the one builder, before the first task, and checks the
report again before it records a version), the strategy that runs the play (did Mitogen load),
and an estimate of the play's task count for the progress display.

Enabled by kiln for bakes (ANSIBLE_CALLBACKS_ENABLED=kiln_events). It writes to the file named by
KILN_EVENTS_FILE and does nothing when that is empty, so a hand-run packer build works too.
"""

from __future__ import annotations

import json
import os
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: kiln_events
    type: aggregate
    short_description: write bake events as JSON lines for kiln
    description:
      - Writes one JSON object per Ansible event to the file named by KILN_EVENTS_FILE.
    requirements:
      - enabled in ANSIBLE_CALLBACKS_ENABLED
"""

INVENTORY_MAX_BYTES = 64 * 1024
INVENTORY_REFUSED_EXIT = 97


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kiln_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        path = os.environ.get("KILN_EVENTS_FILE", "")
        self._out = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._pass = os.environ.get("KILN_PASS", "1")

    def _emit(self, event, **data):
        if self._out is None:
            return
        data.update(event=event, time=time.time(), ansible_pass=self._pass)
        self._out.write(json.dumps(data, default=str) + "\n")
        self._out.flush()

    def _check_inventory(self, play):
        """Report the inventory Ansible was handed, and stop before any task unless it is one host.

        kiln checks the report again before it records a version: the proof that Ansible could
        reach nothing but the builder.
        """
        sources = []
        for source in context.CLIARGS.get("inventory") or ():
            entry = {"source": source, "is_file": os.path.isfile(source), "content": source}
            if entry["is_file"]:
                with open(source, encoding="utf-8", errors="replace") as handle:
                    entry["content"] = handle.read(INVENTORY_MAX_BYTES)
            sources.append(entry)
        inventory = getattr(play.get_variable_manager(), "_inventory", None)
        hosts = sorted(inventory.hosts) if inventory is not None else None
        self._emit("inventory", sources=sources, hosts=hosts)
        if hosts is not None and len(hosts) == 1:
            return
        message = (
            f"the inventory holds {'an unknown number of' if hosts is None else len(hosts)} "
            f"host(s) ({', '.join((hosts or [])[:5])}); kiln runs Ansible only against the one "
            "builder, so this bake stops before its first task"
        )
        self._emit("guard", status="refused", message=message)
        self._display.error(f"kiln: {message}")
        # Callback exceptions only become warnings; SystemExit ends ansible-playbook here.
        raise SystemExit(INVENTORY_REFUSED_EXIT)

    def _report_strategy(self, play):
        """Say which strategy runs the play, and whether Mitogen loaded (kiln_linear's report)."""
        try:
            from ansible.plugins.loader import strategy_loader

            strategy = strategy_loader.get(play.strategy, class_only=True)
        except Exception:  # the strategy's own load reports its failure; this only describes it
            strategy = None
        self._emit(
            "strategy",
            name=play.strategy,
            mitogen=bool(getattr(strategy, "KILN_MITOGEN", False)),
            fallback=getattr(strategy, "KILN_MITOGEN_FALLBACK", ""),
        )

    def v2_playbook_on_play_start(self, play):
        self._check_inventory(play)
        self._report_strategy(play)
        total = 0
        try:
            for block in play.compile():
                total += len(block.get_tasks() if hasattr(block, "get_tasks") else [])
        except Exception:  # a count is a nicety: never let it break a bake
            total = 0
        self._emit("play_start", play=play.get_name(), tasks_estimate=total)

    def v2_playbook_on_stats(self, stats):
        if self._out is not None:
            self._out.close()
            self._out = None
