"""Acceptance tests of the web image: kiln runs them on a throwaway instance of every version.

``kiln_vars`` holds the role's variables as baked (see kiln.batteries.plugin), so the page is
checked against the definition in tasks.py rather than a copy of it.
"""

from __future__ import annotations

from typing import Any

PAGE = (
    'python3 -c "import urllib.request as u; '
    "print(u.urlopen('http://127.0.0.1/', timeout=5).read().decode())\""
)


def test_nginx_is_installed(host: Any) -> None:
    assert host.package("nginx").is_installed


def test_nginx_configuration_is_valid(host: Any) -> None:
    check = host.run("nginx -t")
    assert check.rc == 0, f"nginx -t failed: {check.stderr.strip()}"


def test_nginx_runs_and_is_enabled(host: Any) -> None:
    nginx = host.service("nginx")
    assert nginx.is_running, "nginx is not running"
    assert nginx.is_enabled, "nginx is not enabled at boot"


def test_page_shows_the_title(host: Any, kiln_vars: dict[str, Any]) -> None:
    page = host.run(PAGE)
    assert page.rc == 0, f"http://127.0.0.1/ did not answer: {page.stderr.strip()[-300:]}"
    title = kiln_vars["web_title"]
    assert f"<title>{title}</title>" in page.stdout, f"the page lacks the title {title!r}"
    assert f"<h1>{title}</h1>" in page.stdout, f"the page lacks the heading {title!r}"
