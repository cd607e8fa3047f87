"""Host tools the qemu target runs: find one on PATH, or fail saying how to install it."""

from __future__ import annotations

import shutil

from kiln.errors import ToolError


def need_tool(tool: str) -> str:
    """The path of ``tool`` on PATH; ToolError naming the apt packages when it is missing."""
    path = shutil.which(tool)
    if path is None:
        raise ToolError(
            f"{tool} is not installed or not on PATH; install it with apt-get "
            "(mmdebstrap, fdisk, e2fsprogs, qemu-utils, qemu-system-x86, openssh-client)"
        )
    return path
