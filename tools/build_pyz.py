#!/usr/bin/env python3
"""Build spacetail.pyz: spacetail and its dependencies in one file that a bare `python3` (3.11+)
runs, with nothing installed (`python3 spacetail.pyz up --env`).

A zipapp (`python -m zipapp` semantics: a `__main__.py` at the root, here calling
`spacetail.cli:main`) holding every `.py` and `py.typed` under spacetail/ and the wheels of
requirements/pyz.lock, installed by pip with `--require-hashes --no-deps --only-binary=:all:`
into a temporary folder. Reproducible: members sorted, every timestamp SOURCE_DATE_EPOCH
(default 1980-01-01, the oldest a zip can say), permissions 0644, no __pycache__, so two builds
of one commit are byte-identical. Writes OUT/spacetail.pyz and OUT/spacetail.pyz.sha256
(`sha256sum -c` format) and refuses a file over Spacelift's mounted-file limit (2 MB).

    python tools/build_pyz.py [--out dist] [--lock requirements/pyz.lock] [--find-links DIR]

--find-links DIR takes the wheels from DIR only (no index): the hashes still have to match.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "spacetail"
NAME = "spacetail.pyz"
# Spacelift's limit for one mounted file (its documentation: "up to 2 MB").
MAX_BYTES = 2_000_000
SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = b'''"""spacetail as one file: python3 spacetail.pyz COMMAND ..."""

from spacetail.cli import main

raise SystemExit(main())
'''
EPOCH_1980 = 315532800  # 1980-01-01T00:00:00Z
# Written by pip for this install only, or naming this machine: never in the archive.
SKIP_NAMES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


class BuildError(Exception):
    """Why no pyz was written."""


def _timestamp() -> tuple[int, int, int, int, int, int]:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    try:
        epoch = max(int(raw), EPOCH_1980) if raw else EPOCH_1980
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds") from None
    return time.gmtime(epoch)[:6]


def package_members(repo: Path) -> dict[str, bytes]:
    """Every .py and py.typed under spacetail/, sub-packages included, by archive name."""
    root = repo / PACKAGE
    members = {}
    for path in root.rglob("*"):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        if path.suffix == ".py" or path.name == "py.typed":
            members[path.relative_to(repo).as_posix()] = path.read_bytes()
    if f"{PACKAGE}/cli.py" not in members:
        raise BuildError(f"{root} holds no cli.py: not spacetail's source")
    return members


def dependency_members(lock: Path, find_links: Path | None) -> dict[str, bytes]:
    """The locked wheels, installed by pip into a temporary folder, by archive name."""
    with tempfile.TemporaryDirectory(prefix="spacetail-pyz-") as folder:
        target = Path(folder) / "site"
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-input", "--require-hashes", "--no-deps", "--only-binary=:all:", "--no-compile",
            "--target", str(target), "-r", str(lock),
        ]  # fmt: skip
        if find_links is not None:
            command += ["--no-index", "--find-links", str(find_links)]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if result.returncode != 0:
            raise BuildError(f"pip could not install {lock}:\n{result.stdout}{result.stderr}")
        members = {}
        for path in target.rglob("*"):
            relative = path.relative_to(target)
            if (
                not path.is_file()
                or relative.parts[0] == "bin"
                or "__pycache__" in relative.parts
                or path.suffix == ".pyc"
                or path.name in SKIP_NAMES
            ):
                continue
            members[relative.as_posix()] = path.read_bytes()
    if any(name.split("/")[0] == PACKAGE for name in members):
        raise BuildError(f"{lock} installs a package named {PACKAGE}: it must not")
    return members


def archive(members: dict[str, bytes]) -> bytes:
    """The pyz's bytes: the shebang, then a zip of MEMBERS in name order, all alike."""
    stamp = _timestamp()
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3  # unix, so the permissions below mean what they say
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, members[name], compresslevel=9)
    return buffer.getvalue()


def build(out: Path, lock: Path, find_links: Path | None = None, repo: Path = REPO) -> Path:
    members = dependency_members(lock, find_links)
    own = package_members(repo)
    members.update(own)
    members["__main__.py"] = MAIN
    data = archive(members)
    if len(data) > MAX_BYTES:
        raise BuildError(
            f"{NAME} is {len(data)} bytes, over Spacelift's mounted-file limit of {MAX_BYTES}"
        )
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    target = out / NAME
    for path, content, mode in (
        (target, data, 0o755),
        (out / f"{NAME}.sha256", f"{digest}  {NAME}\n".encode(), 0o644),
    ):
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(content)
        partial.chmod(mode)
        partial.replace(path)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", default=str(REPO / "dist"), help="folder to write into")
    parser.add_argument("--lock", default=str(REPO / "requirements" / "pyz.lock"))
    parser.add_argument("--find-links", help="take the locked wheels from this folder only")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        target = build(
            Path(args.out), Path(args.lock), Path(args.find_links) if args.find_links else None
        )
    except BuildError as exc:
        print(f"build_pyz: {exc}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    size = target.stat().st_size
    print(f"{target}: {size} bytes, sha256 {digest} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
