"""The public API is exactly kiln.__all__; changing it is a deliberate act."""

from __future__ import annotations

import kiln


def test_public_api_is_pinned() -> None:
    assert sorted(kiln.__all__) == [
        "BakeOptions", "BakeOutcome", "Baker", "Base", "BuildError", "CloudSettings",
        "DefinitionError", "DeployError", "GuardError", "HealthCheck", "ImageMoved", "KilnError",
        "PackageSources", "Project", "ProvisionError", "Refused", "Registry", "RegistryError",
        "RenderError", "Role", "Secret", "TaskException", "TestFailure", "ToolError", "Version",
        "open_registry",
    ]  # fmt: skip
    for name in kiln.__all__:
        assert getattr(kiln, name) is not None


def test_every_error_is_a_kiln_error() -> None:
    for name in kiln.__all__:
        obj = getattr(kiln, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, kiln.KilnError), name
