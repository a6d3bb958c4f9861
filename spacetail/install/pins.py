"""tailscale as spacetail installs it: the pinned version and the sha256 of its packages, and
where installs live and are found again (a folder per version in a cache: the workspace's inside
Spacelift, so a later phase finds what an earlier one installed).

Light on purpose: `up` looks here on every phase when tailscale is not on PATH, and must not pay
for the downloader's imports (urllib, tarfile, filelock: about 100 ms)."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_VERSION = "1.102.3"
# The sha256 of DEFAULT_VERSION's static packages: a package is checked against these, never
# against a .sha256 sent by the server that sent the package. They are the sums Tailscale
# publishes (pkgs.tailscale.com/stable/<package>.sha256). The first sums pinned here were read
# from independent public projects that pin them alike (Yocto and Go pins, tailscale/github-action
# `sha256sum` inputs); tools/bump_tailscale.py checks them against the server every week and
# moves the version and the sums together; container/Dockerfile pins the same (a test checks).
PINNED_SHA256 = {
    "amd64": "36ddd9b51be57ffc2990cf76323cfa13643bfbb1b8a969f6183fa164741cdef5",
    "arm64": "a0fa1b154af8c61f862a2259f559f7396d96c0225f4a863eae2333e1546bbe25",
}
EXECUTABLES = ("tailscale", "tailscaled")
VERSION_RE = re.compile(r"\d{1,4}\.\d{1,4}\.\d{1,6}")

# Spacelift sets this in every run; its case is Spacelift's, not ours.
_WORKSPACE_VAR = "TF_VAR_spacelift_workspace_root"


def default_install_dir() -> Path:
    """Where tailscale is installed when no folder is given.

    Inside Spacelift the workspace is mounted into every phase's container, so an
    install made while planning is reused while applying; elsewhere the user's cache.
    """
    workspace = os.environ.get(_WORKSPACE_VAR, "").strip()
    if workspace:
        return Path(workspace) / ".spacetail-cache" / "tailscale"
    import platformdirs  # only outside Spacelift

    return Path(platformdirs.user_cache_dir("spacetail", appauthor=False)) / "tailscale"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split("."))


def _has_executables(folder: Path) -> bool:
    return all(
        (folder / name).is_file() and os.access(folder / name, os.X_OK) for name in EXECUTABLES
    )


def find_installed(dest: Path | None = None) -> Path | None:
    """A folder under ``dest`` (default: the default install dir) holding both executables.

    Any installed version will do; DEFAULT_VERSION is preferred, then the newest.
    """
    root = default_install_dir() if dest is None else Path(dest)
    try:
        names = [
            child.name
            for child in root.iterdir()
            if VERSION_RE.fullmatch(child.name) and child.is_dir()
        ]
    except OSError:
        return None
    names.sort(key=lambda n: (n == DEFAULT_VERSION, _version_key(n)), reverse=True)
    for name in names:
        if _has_executables(root / name):
            return root / name
    return None
