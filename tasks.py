"""kiln's role definitions for this repository. `invoke --list` shows what can be done with them."""

from pathlib import Path

from kiln import HealthCheck, Project
from kiln.tasks import collection

project = Project(Path(__file__).resolve().parent)

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
