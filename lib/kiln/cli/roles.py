"""Tasks for the Ansible roles themselves, before any bake: new-role, test-role (Molecule)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kiln.tasks import cli, project

if TYPE_CHECKING:
    from kiln.roletest import RoleTestReport


def _print_role_test(report: RoleTestReport) -> None:
    outcome = "passed" if report.passed else f"FAILED at {report.failed_step or '?'}"
    print(f"{report.label}: molecule test {outcome} in {report.duration_s:.0f}s")
    for note in report.adaptation:
        print(f"  adapted: {note}")


@task(
    help={
        "role": "the Ansible role to test (a directory in a roles path), or all",
        "scenario": "a Molecule scenario the role ships (roles/<role>/molecule/<scenario>/); "
        "default: kiln's own molecule/<role>/ if any, else the role's 'default'",
    },
)
def test_role(c: Context, role: str, scenario: str = "") -> None:
    """Run a role's Molecule scenario (kiln's own or the role's), offline; or of all roles."""
    from kiln.commands import molecule_image
    from kiln.roletest import test_all_roles
    from kiln.roletest import test_role as run_scenario

    with cli():
        proj = project()
        image = molecule_image(proj)
        paths = proj.roles_paths
        if role == "all":  # Invoke positionals are mandatory, so `all` stands for every role
            if scenario:
                raise Exit("--scenario names one role's scenario; it cannot be used with all", 2)
            reports = test_all_roles(
                project_root=proj.root,
                image=image,
                roles_paths=paths,
                discover_in=proj.own_roles_paths,  # not the installed requirements
                on_report=_print_role_test,  # each as it finishes: a full run takes minutes
            )
            print(f"{len(reports)} scenario(s) passed")
            return
        report = run_scenario(
            role, project_root=proj.root, image=image, scenario=scenario or None, roles_paths=paths
        )
        _print_role_test(report)


@task(help={"name": "the new Ansible role (lowercase letters, digits, underscores)"})
def new_role(c: Context, name: str) -> None:
    """Scaffold an Ansible role in roles/ and its passing Molecule scenario in molecule/."""
    from kiln.roletest import new_role as scaffold

    with cli():
        for path in scaffold(name, project_root=project().root):
            print(f"created {path.relative_to(project().root)}")


TASKS = (test_role, new_role)
