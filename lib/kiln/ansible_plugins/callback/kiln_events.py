"""kiln's Ansible callback: one JSON line per event, for live progress and precise failure reports.

Enabled by kiln for bakes (ANSIBLE_CALLBACKS_ENABLED=kiln_events). It writes to the file named by
KILN_EVENTS_FILE and does nothing when that is empty, so a hand-run packer build works too.
Results of no_log tasks arrive here already censored by Ansible.
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

TAIL_LINES = 20
INVENTORY_MAX_BYTES = 64 * 1024
INVENTORY_REFUSED_EXIT = 97


def _tail(value, lines=TAIL_LINES):
    if not value:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, default=str)
    return "\n".join(value.splitlines()[-lines:])


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

    @staticmethod
    def _task_fields(task):
        role = getattr(task, "_role", None)
        return {
            "task": task.get_name(),
            "path": task.get_path() or "",
            "role": role.get_name() if role is not None else "",
            "action": task.action,
        }

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

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit("task_start", handler=False, **self._task_fields(task))

    def v2_playbook_on_handler_task_start(self, task):
        self._emit("task_start", handler=True, **self._task_fields(task))

    def _result(self, status, result):
        res = result._result
        self._emit(
            "task_result",
            status=status,
            changed=bool(res.get("changed", False)),
            msg=_tail(res.get("msg", "")),
            stdout=_tail(res.get("stdout", "")),
            stderr=_tail(res.get("stderr", "")),
            module_stderr=_tail(res.get("module_stderr", "")),
            censored=bool(res.get("censored")),
            **self._task_fields(result._task),
        )

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("ignored" if ignore_errors else "failed", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        totals = {}
        for host in stats.processed:
            summary = stats.summarize(host)
            for key, value in summary.items():
                totals[key] = totals.get(key, 0) + value
        self._emit("stats", **totals)
        if self._out is not None:
            self._out.close()
            self._out = None
