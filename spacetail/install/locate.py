"""Where tailscale and tailscaled are: on PATH, else in `spacetail install-tailscale`'s folder.

Kept apart from tailnet/tailscale.py (command lines and the LocalAPI, which the manager uses): only
`up`, `run`, `spacetail manager` and `doctor` look for the binaries, and neither they nor the
manager import the downloader to do it (install/pins.py knows where installs are)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from spacetail.errors import ConfigError
from spacetail.install.pins import find_installed
from spacetail.tailnet.tailscale import Binaries


def which(name: str, path: str) -> str | None:
    # shutil.which, without importing shutil (and bz2 and lzma) before the manager starts.
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            # Absolute, resolved in up's folder: the manager runs from / (a relative or empty
            # PATH entry would then name another file, or none).
            return os.path.abspath(candidate)
    return None


def find_binaries(env: Mapping[str, str]) -> Binaries:
    """tailscale and tailscaled from PATH, else from `spacetail install-tailscale`'s folder."""
    path = env.get("PATH", os.defpath)
    found = [which(name, path) for name in ("tailscale", "tailscaled")]
    if found[0] and found[1]:
        return Binaries(Path(found[0]), Path(found[1]))
    folder = find_installed()
    if folder is not None:
        return Binaries(folder / "tailscale", folder / "tailscaled")
    missing = " and ".join(
        n for n, f in zip(("tailscale", "tailscaled"), found, strict=True) if not f
    )
    raise ConfigError(
        f"PATH: {missing} not found; use the spacetail runner image, or run "
        "`spacetail install-tailscale` in a before_init hook"
    )
