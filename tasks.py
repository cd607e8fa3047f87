"""kiln's role definitions for this repository. `invoke --list` shows what can be done with them."""

import os
from pathlib import Path

from kiln import HealthCheck, Project
from kiln.tasks import collection

# KILN_IMAGE_NAMESPACE lets several checkouts (or test sandboxes) share one Docker engine.
project = Project(
    Path(__file__).resolve().parent,
    image_namespace=os.environ.get("KILN_IMAGE_NAMESPACE", "kiln"),
)

bookworm = project.base("debian-bookworm", suite="bookworm")

project.role("base", parent=bookworm, ansible_roles=["common"])

project.role(
    "web",
    parent="base",
    ansible_roles=["web"],
    variables={
        "web_title": "Hello from kiln",
        "web_message": "Baked once, never patched.",
    },
    health_check=HealthCheck(),
)

ns = collection(project)
