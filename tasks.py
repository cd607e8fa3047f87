"""kiln's role definitions for this repository. `invoke --list` shows what can be done with them."""

import os
from pathlib import Path

from kiln import CloudSettings, HealthCheck, Project
from kiln.tasks import collection

# Images are named kiln/kiln-<registry id>/<role>:<N>: every checkout with a registry of its own
# has its own names on a shared Docker engine. The name is set, not taken from the directory, so
# that checkouts sharing one registry name a version alike wherever they are cloned.
# KILN_IMAGE_NAMESPACE puts the test sandboxes' images apart from a developer's own.
project = Project(
    Path(__file__).resolve().parent,
    name="kiln",
    image_namespace=os.environ.get("KILN_IMAGE_NAMESPACE", "kiln"),
)

# Cloud targets start from these images (Debian 12 official images; use your account's ids).
bookworm = project.base(
    "debian-bookworm",
    suite="bookworm",
    cloud={
        "amazon-ebs": CloudSettings(
            source_image="ami-0d1f0ba9c5e4a5b4c", region="eu-west-1", instance_type="t3.small"
        ),
        "googlecompute": CloudSettings(
            source_image="debian-12-bookworm-v20261111",
            region="europe-west1-b",
            instance_type="e2-small",
            project_id="kiln-images",
        ),
    },
)

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
    tests=["tests/images/web"],
)

ns = collection(project)
