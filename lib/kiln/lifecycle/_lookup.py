"""The lookup every lifecycle verb starts from: a recorded version, or an actionable error."""

from __future__ import annotations

from kiln.errors import RegistryError
from kiln.registry import Registry, Version


def require(registry: Registry, role: str, version: int | None) -> Version:
    """A recorded version of role (the newest if version is None), or an actionable error."""
    found = registry.get(role, version) if version else registry.latest(role)
    if found is not None:
        return found
    newest = registry.latest(role)
    if newest is None:
        raise RegistryError(f"{role} has no recorded versions; run `invoke bake {role}` first")
    raise RegistryError(
        f"{role} has no version {version} (newest: v{newest.version}); see `invoke history {role}`"
    )
