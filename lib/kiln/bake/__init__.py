"""Baking: resolve a role's ancestry, skip what is up to date, run Packer for the rest.

A bake records a whole version (artifact, packages, timings) or nothing; the builder is removed
whatever happens, and bakes of one role are serialised by a file lock. The pipeline, by module:

- ``baker``: ``Baker``, which only orchestrates the steps below, and ``open_registry``;
- ``inputs``: the fingerprints of a role's chain, and the secrets read for them;
- ``node``: baking one node (a base's bootstrap, a role's Packer run) and recording it;
- ``options``: ``BakeOptions`` (what a bake is asked to do) and ``BakeOutcome`` (what it did);
- ``policy``: when a recorded version is reused, and when a bake is refused;
- ``audit``: the guard's checks of a role and of its rendered playbook;
- ``scope``: the role lock, the work directory and the artifact not recorded yet;
- ``invocation``: Packer's command line and environment;
- ``record``: the version record, the package manifest and the timings;
- ``gate``: the acceptance tests a new version passes before it counts;
- ``failures``: a run that went wrong, as one actionable error.
"""

from __future__ import annotations

from kiln.bake.baker import Baker, open_registry
from kiln.bake.options import BakeOptions, BakeOutcome
from kiln.bake.scope import role_lock
from kiln.redact import Redactor

__all__ = ["BakeOptions", "BakeOutcome", "Baker", "Redactor", "open_registry", "role_lock"]
