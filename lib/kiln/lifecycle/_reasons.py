"""Bake reasons: the document recorded with a version baked although its inputs are unchanged
(kiln.lifecycle._upstream writes them), and the one line history, show, diff and the report
print for it. An ordinary bake (its inputs changed, or it is the first) records none.
"""

from __future__ import annotations

import json
from typing import Any

from kiln.registry import Version

UPSTREAM_UPDATES = "upstream-updates"
PARENT_REBAKED = "parent-rebaked"


def reason_document(kind: str, replaces: Version | None, **details: Any) -> str:
    """A bake-reason document: why a version with unchanged inputs was baked."""
    return json.dumps(
        {
            "kind": kind,
            "replaces": replaces.version if replaces is not None else None,
            **details,
        },
        sort_keys=True,
    )


def describe_reason(document: str | None) -> str | None:
    """One line for history, show, diff and the report; None for an ordinary bake."""
    if not document:
        return None
    data = json.loads(document)
    if data.get("kind") == UPSTREAM_UPDATES:
        updates = data.get("updates", [])
        security = sum(1 for u in updates if u.get("security"))
        listed = ", ".join(
            f"{u['name']} {u['installed']} -> {u['candidate']}"
            + (" (security)" if u.get("security") else "")
            for u in updates[:5]
        )
        more = f", and {len(updates) - 5} more" if len(updates) > 5 else ""
        count = f"{len(updates)} upstream update{'s' if len(updates) != 1 else ''}"
        return f"rebaked for {count} ({security} security): {listed}{more}"
    if data.get("kind") == PARENT_REBAKED:
        return f"rebaked because its parent {data.get('parent')} was rebaked for upstream updates"
    return f"rebaked: {data.get('kind')}"


def reason_data(document: str | None) -> dict[str, Any] | None:
    """The recorded document as data (for --json), or None for an ordinary bake."""
    return dict(json.loads(document)) if document else None
