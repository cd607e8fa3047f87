"""Registry: the one object callers hold, composed of one part per concern."""

from __future__ import annotations

from kiln.registry.channels import Channels
from kiln.registry.lineage import Lineage
from kiln.registry.records import Records


class Registry(Records, Channels, Lineage):
    """Narrow interface over the SQLite file, so that another backend can be added later.

    Versions and Records (test runs, deployments, events), Channels, and Lineage (the
    lifecycle's bulk reads) each live in their own module; all share one Connection.
    """

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
