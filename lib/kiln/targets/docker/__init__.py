"""The docker target: systemd builder containers committed as local Docker images.

target holds the BakeTarget subclass; apt_cache is the shared apt cache its builders run, a script
for the builder's own python3 that kiln uploads as a file (and hashes into fingerprints).
"""

from __future__ import annotations

# INIT, SYSTEMD_RUN_FLAGS and throwaway_instance live in kiln.docker; tests and bench reach
# them here too, as the flags the docker target's builders run with.
from kiln.docker import INIT, SYSTEMD_RUN_FLAGS, throwaway_instance
from kiln.targets.docker.target import DockerTarget

__all__ = ["INIT", "SYSTEMD_RUN_FLAGS", "DockerTarget", "throwaway_instance"]
