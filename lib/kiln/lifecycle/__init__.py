"""Image versions as a lifecycle; every verb reads or changes the registry and returns data.

- `_history`: history, show, ancestry and VersionDetails;
- `_diff`: diff of packages, recorded inputs and image files;
- `_channels`: check_channel, channels, channel_stack, promote, rollback and revoke;
- `_gc`: gc and gc_plan;
- `_outdated`: outdated and bake_outdated;
- `_upstream`: upstream_updates and bake_upstream (pending updates upstream; apt_updates asks
  the mirror, `_reasons` records why a version with unchanged inputs was baked);
- `sbom`: a CycloneDX SBOM of a version;
- `_lookup`: `require`, the version lookup they share.

Refusals are RegistryErrors that say what to do next; the command-line layer prints results.
"""

from kiln.docker import FileEntry
from kiln.lifecycle._channels import (
    ChannelChange,
    ChannelVersion,
    channel_stack,
    channels,
    promote,
    resolve_channel,
    revoke,
    rollback,
)
from kiln.lifecycle._diff import PackageChange, VersionDiff, diff, diff_filesystems, diff_packages
from kiln.lifecycle._gc import gc, gc_plan
from kiln.lifecycle._history import (
    MASK,
    AnsibleRoleDigest,
    History,
    VersionDetails,
    history,
    role_files_digest,
    show,
)
from kiln.lifecycle._outdated import bake_outdated, outdated
from kiln.lifecycle._upstream import (
    ImageUpdates,
    UpstreamRebake,
    UpstreamReport,
    bake_upstream,
    upstream_cache_dir,
    upstream_scope,
    upstream_updates,
)

__all__ = [
    "MASK",
    "AnsibleRoleDigest",
    "ChannelChange",
    "ChannelVersion",
    "FileEntry",
    "History",
    "ImageUpdates",
    "PackageChange",
    "UpstreamRebake",
    "UpstreamReport",
    "VersionDetails",
    "VersionDiff",
    "bake_outdated",
    "bake_upstream",
    "channel_stack",
    "channels",
    "diff",
    "diff_filesystems",
    "diff_packages",
    "gc",
    "gc_plan",
    "history",
    "outdated",
    "promote",
    "resolve_channel",
    "revoke",
    "role_files_digest",
    "rollback",
    "show",
    "upstream_cache_dir",
    "upstream_scope",
    "upstream_updates",
]
