"""Unit tests for spacetail.install.installer against a package mirror served on the loopback
address."""

from __future__ import annotations

import hashlib
import io
import os
import platform
import socket
import stat
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from spacetail.errors import ConfigError, OperationFailed
from spacetail.install import installer, package, pins
from tests.mirror import PROXY_VARS, Mirror

# A version spacetail pins no sum for: these tests take the mirror's .sha256, as
# --trust-server-checksum does (install_cached below); the pins have tests of their own.
VERSION = "1.90.0"
ARCH = "amd64"
PKG = f"tailscale_{VERSION}_{ARCH}.tgz"
PREFIX = f"tailscale_{VERSION}_{ARCH}"

Member = tuple[tarfile.TarInfo, bytes | None]


def install_cached(*args: Any, **kwargs: Any) -> Path:
    kwargs.setdefault("trust_server", True)
    return installer.install_cached(*args, **kwargs)


def install_tailscale(*args: Any, **kwargs: Any) -> Path:
    kwargs.setdefault("trust_server", True)
    return installer.install_tailscale(*args, **kwargs)


def member(
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: int = 0o755,
) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def script(text: str) -> bytes:
    return f"#!/bin/sh\necho {text}\n".encode()


def standard_members(version: str = VERSION, arch: str = ARCH) -> list[Member]:
    prefix = f"tailscale_{version}_{arch}"
    return [
        member(prefix, kind=tarfile.DIRTYPE),
        member(f"{prefix}/tailscale", script(f"tailscale {version}")),
        member(f"{prefix}/tailscaled", script(f"tailscaled {version}")),
        member(f"{prefix}/systemd", kind=tarfile.DIRTYPE),
        member(f"{prefix}/systemd/tailscaled.service", b"[Unit]\n", mode=0o644),
        member(f"{prefix}/systemd/tailscaled.defaults", b"PORT=41641\n", mode=0o644),
    ]


def build_package(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


def leftovers(dest: Path) -> list[str]:
    if not dest.exists():
        return []
    return sorted(p.name for p in dest.iterdir() if p.name != ".install.lock")


# --- arch, version, URL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "amd64"),
        ("AMD64", "amd64"),
        ("aarch64", "arm64"),
        ("arm64", "arm64"),
        ("armv7l", "arm"),
        ("i686", "386"),
    ],
)
def test_arch_from_machine(monkeypatch: pytest.MonkeyPatch, machine: str, expected: str) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert installer.tailscale_arch() == expected


def test_unknown_machine_names_the_arch_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "s390x")
    with pytest.raises(ConfigError) as excinfo:
        installer.tailscale_arch()
    message = str(excinfo.value)
    assert message.startswith("--arch:")
    assert "s390x" in message
    assert "amd64" in message
    assert "\n" not in message


@pytest.mark.parametrize("arch", ["amd64", "arm64", "arm", "386"])
def test_explicit_arch_is_kept(arch: str) -> None:
    assert installer.tailscale_arch(arch) == arch


def test_explicit_machine_name_is_mapped() -> None:
    assert installer.tailscale_arch("x86_64") == "amd64"
    assert installer.tailscale_arch("aarch64") == "arm64"


@pytest.mark.parametrize("arch", ["mips", "", "amd64 ", "../amd64"])
def test_unsupported_explicit_arch(arch: str) -> None:
    with pytest.raises(ConfigError, match=r"^--arch: .* use one of 386, amd64, arm, arm64$"):
        installer.tailscale_arch(arch)


@pytest.mark.parametrize("version", ["1.96.4", "1.0.0", "1.97.123"])
def test_good_versions(version: str) -> None:
    assert installer.validate_version(version) == version


@pytest.mark.parametrize(
    "version", ["1.9x", "", "v1.96.4", "1.96", "1.96.4\n", "1.96.4/../..", "1.96.4-pre", " 1.96.4"]
)
def test_bad_versions(version: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        installer.validate_version(version)
    shown = version.replace("\n", "\\n")  # ConfigError keeps every message on one line
    assert str(excinfo.value) == (
        f'--version: "{shown}" is not a tailscale version like {pins.DEFAULT_VERSION}'
    )


def test_exact_version_message() -> None:
    with pytest.raises(ConfigError) as excinfo:
        installer.validate_version("1.9x")
    assert str(excinfo.value) == (
        f'--version: "1.9x" is not a tailscale version like {pins.DEFAULT_VERSION}'
    )


def test_package_urls() -> None:
    assert installer.package_urls("1.96.4", "https://pkgs.tailscale.com/stable/", "arm64") == (
        "https://pkgs.tailscale.com/stable/tailscale_1.96.4_arm64.tgz",
        "https://pkgs.tailscale.com/stable/tailscale_1.96.4_arm64.tgz.sha256",
    )
    assert installer.package_urls("1.96.4", package.DEFAULT_BASE_URL, "amd64")[0] == (
        "https://pkgs.tailscale.com/stable/tailscale_1.96.4_amd64.tgz"
    )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "pkgs.tailscale.com/stable",
        "ftp://example.test/x",
        "file:///srv/x",
        "http://",
        "http://example.test:port/stable",
        "http://example.test:99999/stable",
        "https://example.test/stable?x=1",
    ],
)
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^--base-url: ") as excinfo:
        installer.validate_base_url(url)
    assert "\n" not in str(excinfo.value)


def test_default_version_is_a_version() -> None:
    assert installer.validate_version(pins.DEFAULT_VERSION) == pins.DEFAULT_VERSION


def test_default_install_dir_in_spacelift(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TF_VAR_spacelift_workspace_root", str(tmp_path / "workspace"))
    assert pins.default_install_dir() == (tmp_path / "workspace" / ".spacetail-cache" / "tailscale")


def test_default_install_dir_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TF_VAR_spacelift_workspace_root", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert pins.default_install_dir() == tmp_path / "cache" / "spacetail" / "tailscale"


# --- installing -----------------------------------------------------------------------------


def test_install_unpacks_only_the_executables(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    log = Log()
    dest = tmp_path / "dest"
    folder = install_cached(VERSION, mirror.base_url, dest, ARCH, log=log)
    assert folder == dest / VERSION
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "tailscale",
        "tailscaled",
    ]
    for name in ("tailscale", "tailscaled"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o755
        assert (folder / name).read_bytes() == script(f"{name} {VERSION}")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert leftovers(dest) == [VERSION]
    assert f"downloaded tailscale {VERSION} ({ARCH}, " in log.text()
    assert f"sha256 verified (the server's .sha256 only), installed in {folder}" in log.text()
    # The CLI's log adds "spacetail: "; a line of its own would print it twice.
    assert not any(line.startswith("spacetail") for line in log.lines)


def test_default_log_goes_to_stderr(
    mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    install_cached(VERSION, mirror.base_url, tmp_path, ARCH)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sha256 verified" in captured.err
    assert all(line.startswith("spacetail: ") for line in captured.err.splitlines())
    assert "spacetail: spacetail:" not in captured.err


def test_checksum_file_with_file_name(mirror: Mirror, tmp_path: Path) -> None:
    package = build_package(standard_members())
    sha = hashlib.sha256(package).hexdigest().upper().encode() + f"  {PKG}\n".encode()
    mirror.publish(VERSION, ARCH, package, sha)
    folder = install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert (folder / "tailscaled").is_file()


def test_install_is_idempotent(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    first = install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    inode = (first / "tailscaled").stat().st_ino
    log = Log()
    second = install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=log)
    assert second == first
    assert (second / "tailscaled").stat().st_ino == inode
    assert mirror.package_requests(PKG) == 1
    assert "already installed" in log.text()


def test_changed_executable_is_reinstalled(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    folder = install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    (folder / "tailscaled").write_bytes(b"#!/bin/sh\necho tampered\n")
    install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert mirror.package_requests(PKG) == 2
    assert (folder / "tailscaled").read_bytes() == script(f"tailscaled {VERSION}")
    assert leftovers(tmp_path) == [VERSION]


def test_other_arch_in_the_same_folder_is_replaced(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    mirror.publish(VERSION, "arm64", build_package(standard_members(arch="arm64")))
    install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    install_cached(VERSION, mirror.base_url, tmp_path, "arm64", log=Log())
    assert mirror.package_requests(f"tailscale_{VERSION}_arm64.tgz") == 1
    assert leftovers(tmp_path) == [VERSION]


def test_checksum_mismatch_installs_nothing(mirror: Mirror, tmp_path: Path) -> None:
    package = build_package(standard_members())
    wrong = "0" * 64
    mirror.publish(VERSION, ARCH, package, wrong.encode() + b"\n")
    dest = tmp_path / "dest"
    with pytest.raises(OperationFailed) as excinfo:
        install_cached(VERSION, mirror.base_url, dest, ARCH, log=Log())
    actual = hashlib.sha256(package).hexdigest()
    assert str(excinfo.value) == (
        f"checksum mismatch for {PKG}: expected {wrong} (the server's .sha256 only), "
        f"got {actual}; nothing was installed"
    )
    assert leftovers(dest) == []
    assert pins.find_installed(dest) is None


def test_checksum_file_without_digest(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()), b"<html>oops</html>\n")
    with pytest.raises(OperationFailed, match=r"does not hold a sha256 digest"):
        install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert leftovers(tmp_path) == []


def refused(mirror: Mirror, tmp_path: Path, members: list[Member]) -> str:
    mirror.publish(VERSION, ARCH, build_package(members))
    dest = tmp_path / "dest"
    with pytest.raises(OperationFailed) as excinfo:
        install_cached(VERSION, mirror.base_url, dest, ARCH, log=Log())
    assert leftovers(dest) == []
    assert not (tmp_path / "evil").exists()
    return str(excinfo.value)


@pytest.mark.parametrize(
    "name", ["../../evil", f"{PREFIX}/../../evil", "/evil", f"{PREFIX}/../{PREFIX}/tailscale"]
)
def test_path_traversal_is_refused(mirror: Mirror, tmp_path: Path, name: str) -> None:
    message = refused(mirror, tmp_path, [*standard_members(), member(name, b"x")])
    assert "unsafe path" in message
    assert message.endswith("nothing was installed")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_linked_executable_is_refused(mirror: Mirror, tmp_path: Path, kind: bytes) -> None:
    members = [m for m in standard_members() if not m[0].name.endswith("/tailscaled")] + [
        member(f"{PREFIX}/tailscaled", kind=kind, linkname="/bin/sh")
    ]
    message = refused(mirror, tmp_path, members)
    assert "is not a regular file" in message


def test_directory_in_place_of_executable_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    members = [m for m in standard_members() if not m[0].name.endswith("/tailscale")]
    members.append(member(f"{PREFIX}/tailscale", kind=tarfile.DIRTYPE))
    assert "is not a regular file" in refused(mirror, tmp_path, members)


def test_duplicate_executable_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    members = [*standard_members(), member(f"{PREFIX}/tailscale", b"second")]
    assert "twice" in refused(mirror, tmp_path, members)


def test_missing_executable_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    members = [m for m in standard_members() if not m[0].name.endswith("/tailscaled")]
    assert f"does not hold {PREFIX}/tailscaled" in refused(mirror, tmp_path, members)


def test_symlink_elsewhere_is_not_followed(mirror: Mirror, tmp_path: Path) -> None:
    link = member(f"{PREFIX}/systemd/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd")
    mirror.publish(VERSION, ARCH, build_package([*standard_members(), link]))
    folder = install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert not (folder / "systemd").exists()
    assert not (folder / "link").exists()


def test_not_a_tarball(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, b"not a tarball at all")
    with pytest.raises(OperationFailed, match=r"cannot be unpacked.*nothing was installed"):
        install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert leftovers(tmp_path) == []


def test_missing_package_gives_http_status(mirror: Mirror, tmp_path: Path) -> None:
    with pytest.raises(OperationFailed) as excinfo:
        install_cached("1.2.3", mirror.base_url, tmp_path, ARCH, log=Log())
    message = str(excinfo.value)
    assert "HTTP 404" in message
    assert "tailscale_1.2.3_amd64.tgz.sha256" in message
    assert "--version" in message
    assert leftovers(tmp_path) == []


def test_oversized_download_is_cut(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(installer, "MAX_PACKAGE_BYTES", 100)
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    with pytest.raises(OperationFailed, match=r"larger than 100 bytes"):
        install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert leftovers(tmp_path) == []


def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)


def test_unreachable_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxies(monkeypatch)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    base_url = f"http://127.0.0.1:{port}"
    with pytest.raises(OperationFailed) as excinfo:
        install_cached(VERSION, base_url, tmp_path, ARCH, log=Log())
    assert str(excinfo.value) == (
        f"cannot download {base_url}/{PKG}.sha256: connection refused; "
        "check --base-url, or use the spacetail runner image"
    )
    assert leftovers(tmp_path) == []
    assert pins.find_installed(tmp_path) is None


def test_no_dns_names_the_url_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a network: the default server's name does not resolve (a .invalid name never
    does, so the test does not depend on this machine's network)."""
    _no_proxies(monkeypatch)
    for module in (installer, package):
        monkeypatch.setattr(module, "DEFAULT_BASE_URL", "https://pkgs.tailscale.invalid/stable")
    with pytest.raises(OperationFailed) as excinfo:
        install_cached(VERSION, package.DEFAULT_BASE_URL, tmp_path, ARCH, log=Log())
    message = str(excinfo.value)
    url = f"https://pkgs.tailscale.invalid/stable/{PKG}.sha256"
    assert message.startswith(f"cannot download {url}: ")
    assert "(no network or DNS?); use --base-url with a mirror of pkgs.tailscale.com" in message
    assert message.endswith("or the spacetail runner image")
    assert "[Errno" not in message


def test_a_stale_proxy_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxies(monkeypatch)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    with pytest.raises(OperationFailed) as excinfo:
        install_cached(VERSION, "https://mirror.invalid/x", tmp_path, ARCH, log=Log())
    assert "https_proxy is set: unset it if that proxy is gone, or check --base-url" in str(
        excinfo.value
    )


# --- --dest: the executables go IN the folder ------------------------------------------------


def test_dest_puts_the_executables_in_the_folder(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    bin_dir = tmp_path / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "other-tool").write_bytes(b"keep me")
    (bin_dir / "tailscale").write_bytes(b"an older one")
    log = Log()
    folder = install_tailscale(VERSION, mirror.base_url, bin_dir, ARCH, log=log)
    assert folder == bin_dir
    for name in ("tailscale", "tailscaled"):
        assert (bin_dir / name).read_bytes() == script(f"{name} {VERSION}")
        assert stat.S_IMODE((bin_dir / name).stat().st_mode) == 0o755
    assert (bin_dir / "other-tool").read_bytes() == b"keep me"
    assert sorted(p.name for p in bin_dir.iterdir() if not p.name.startswith(".")) == [
        "other-tool",
        "tailscale",
        "tailscaled",
    ]
    assert not [p for p in bin_dir.iterdir() if p.name.startswith(".partial-")]
    assert f"installed in {bin_dir}" in log.text()
    again = Log()
    assert install_tailscale(VERSION, mirror.base_url, bin_dir, ARCH, log=again) == bin_dir
    assert "already installed" in again.text()
    assert mirror.package_requests(PKG) == 1


def test_dest_install_that_fails_leaves_the_folder_as_it_was(
    mirror: Mirror, tmp_path: Path
) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()), b"0" * 64 + b"\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tailscale").write_bytes(b"an older one")
    with pytest.raises(OperationFailed, match="checksum mismatch"):
        install_tailscale(VERSION, mirror.base_url, bin_dir, ARCH, log=Log())
    assert sorted(p.name for p in bin_dir.iterdir() if p.name != ".install.lock") == ["tailscale"]
    assert (bin_dir / "tailscale").read_bytes() == b"an older one"


def test_without_dest_the_versioned_cache_is_used(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_VAR_spacelift_workspace_root", str(tmp_path))
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    cache = pins.default_install_dir()
    for dest in (None, cache):
        folder = install_tailscale(VERSION, mirror.base_url, dest, ARCH, log=Log())
        assert folder == cache / VERSION
    assert pins.find_installed() == cache / VERSION
    assert mirror.package_requests(PKG) == 1


def test_silent_mirror_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxies(monkeypatch)
    monkeypatch.setattr(package, "REQUEST_TIMEOUT", 0.3)
    with socket.socket() as silent:
        # The kernel accepts the connection into the backlog; nobody ever answers.
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        with pytest.raises(OperationFailed, match=r"timed out"):
            install_cached(VERSION, f"http://127.0.0.1:{port}", tmp_path, ARCH, log=Log())
    assert leftovers(tmp_path) == []


def test_proxy_variables_are_honoured(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    # The mirror doubles as the proxy; the .invalid name is never resolved by anyone.
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{mirror.port}")
    folder = install_cached(VERSION, "http://mirror.invalid/stable", tmp_path, ARCH, log=Log())
    assert (folder / "tailscale").is_file()
    assert mirror.package_requests(PKG) == 1


def test_stale_partial_folder_is_removed(mirror: Mirror, tmp_path: Path) -> None:
    stale = tmp_path / ".partial-killed"
    (stale / "out").mkdir(parents=True)
    (stale / "out" / "tailscale").write_bytes(b"half")
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert leftovers(tmp_path) == [VERSION]


def test_concurrent_installs_download_once(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    dest = tmp_path / "dest"
    workers = 4
    barrier = threading.Barrier(workers)
    results: list[Path] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            folder = install_cached(VERSION, mirror.base_url, dest, ARCH, log=Log())
        except BaseException as exc:
            with guard:
                errors.append(exc)
        else:
            with guard:
                results.append(folder)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert results == [dest / VERSION] * workers
    assert mirror.package_requests(PKG) == 1
    assert leftovers(dest) == [VERSION]


# --- finding an install ---------------------------------------------------------------------


def fake_install(
    root: Path, version: str, names: tuple[str, ...] = ("tailscale", "tailscaled")
) -> Path:
    folder = root / version
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(script(name))
        (folder / name).chmod(0o755)
    return folder


def test_find_installed_prefers_default_version(tmp_path: Path) -> None:
    fake_install(tmp_path, "1.0.0")
    fake_install(tmp_path, "99.0.0")
    default = fake_install(tmp_path, pins.DEFAULT_VERSION)
    assert pins.find_installed(tmp_path) == default


def test_find_installed_takes_newest_otherwise(tmp_path: Path) -> None:
    fake_install(tmp_path, "1.9.0")
    newest = fake_install(tmp_path, "1.10.0")
    fake_install(tmp_path, "2.0.0", names=("tailscale",))
    (tmp_path / ".partial-x").mkdir()
    (tmp_path / "notes").mkdir()
    assert pins.find_installed(tmp_path) == newest


def test_find_installed_skips_non_executables(tmp_path: Path) -> None:
    folder = fake_install(tmp_path, "1.2.3")
    (folder / "tailscaled").chmod(0o644)
    if os.geteuid() == 0:
        # root may execute anything with any x bit; with none it still may not.
        assert not os.access(folder / "tailscaled", os.X_OK)
    assert pins.find_installed(tmp_path) is None


def test_find_installed_without_folder(tmp_path: Path) -> None:
    assert pins.find_installed(tmp_path / "missing") is None


def test_find_installed_uses_default_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TF_VAR_spacelift_workspace_root", str(tmp_path))
    assert pins.find_installed() is None
    folder = fake_install(pins.default_install_dir(), pins.DEFAULT_VERSION)
    assert pins.find_installed() == folder


def test_find_installed_after_install(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    folder = install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert pins.find_installed(tmp_path) == folder


# --- which sha256: the pin, --sha256, or knowingly the server's -------------------------------

PINNED = pins.DEFAULT_VERSION
PINNED_PKG = f"tailscale_{PINNED}_{ARCH}.tgz"


def test_the_pinned_version_has_a_sum_for_each_image_architecture() -> None:
    assert set(pins.PINNED_SHA256) == {"amd64", "arm64"}
    for arch, digest in pins.PINNED_SHA256.items():
        assert installer.expected_checksum(PINNED, arch) == installer.Checksum(digest, "pinned")


def test_a_substituted_package_with_a_matching_sha256_file_is_refused(
    mirror: Mirror, tmp_path: Path
) -> None:
    """The server's .sha256 is never asked for: the pin decides, whatever the server says."""
    substitute = build_package(standard_members(PINNED))
    mirror.publish(PINNED, ARCH, substitute)  # with a .sha256 that matches the substitute
    dest = tmp_path / "dest"
    with pytest.raises(OperationFailed) as excinfo:
        installer.install_cached(PINNED, mirror.base_url, dest, ARCH, log=Log())
    received = hashlib.sha256(substitute).hexdigest()
    assert str(excinfo.value) == (
        f"checksum mismatch for {PINNED_PKG}: expected {pins.PINNED_SHA256[ARCH]} (pinned), "
        f"got {received}; nothing was installed"
    )
    assert mirror.package_requests(PINNED_PKG + ".sha256") == 0
    assert leftovers(dest) == []


def test_trusting_the_server_does_not_override_the_pin(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(PINNED, ARCH, build_package(standard_members(PINNED)))
    with pytest.raises(OperationFailed, match=r"\(pinned\), got"):
        installer.install_cached(PINNED, mirror.base_url, tmp_path, ARCH, trust_server=True,
                               log=Log())  # fmt: skip


def test_another_version_needs_its_sha256(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    with pytest.raises(ConfigError) as excinfo:
        installer.install_cached(VERSION, mirror.base_url, tmp_path, ARCH, log=Log())
    assert str(excinfo.value) == (
        f"--sha256: spacetail pins no sha256 for {PKG}; pass --sha256 with the sum Tailscale "
        "publishes for it, or --trust-server-checksum to take the server's own .sha256 (which "
        "proves only that the download is whole)"
    )
    assert sum(mirror.requests.values()) == 0
    assert leftovers(tmp_path) == []


def test_the_pinned_version_on_another_architecture_needs_its_sha256() -> None:
    with pytest.raises(ConfigError, match=r"^--sha256: spacetail pins no sha256 for "):
        installer.expected_checksum(PINNED, "386")


def test_a_given_sha256_is_checked_and_the_server_sum_ignored(
    mirror: Mirror, tmp_path: Path
) -> None:
    package = build_package(standard_members())
    mirror.publish(VERSION, ARCH, package, b"0" * 64 + b"\n")
    digest = hashlib.sha256(package).hexdigest()
    log = Log()
    folder = installer.install_cached(VERSION, mirror.base_url, tmp_path, ARCH,
                                    sha256=digest.upper(), log=log)  # fmt: skip
    assert (folder / "tailscaled").read_bytes() == script(f"tailscaled {VERSION}")
    assert "sha256 verified (--sha256)" in log.text()
    assert mirror.package_requests(PKG + ".sha256") == 0
    other = tmp_path / "other"
    with pytest.raises(OperationFailed) as excinfo:
        installer.install_cached(VERSION, mirror.base_url, other, ARCH, sha256="1" * 64, log=log)
    assert f"expected {'1' * 64} (--sha256), got {digest}" in str(excinfo.value)
    assert leftovers(other) == []


def test_the_servers_sum_only_when_asked(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish(VERSION, ARCH, build_package(standard_members()))
    log = Log()
    installer.install_cached(VERSION, mirror.base_url, tmp_path, ARCH, trust_server=True, log=log)
    assert "sha256 verified (the server's .sha256 only)" in log.text()
    assert mirror.package_requests(PKG + ".sha256") == 1


@pytest.mark.parametrize(
    ("sha256", "trust", "message"),
    [
        ("abc", False, '--sha256: "abc" is not a sha256 (64 hexadecimal digits)'),
        ("g" * 64, False, f'--sha256: "{"g" * 64}" is not a sha256 (64 hexadecimal digits)'),
        ("a" * 64, True, "--trust-server-checksum: set together with --sha256; use one of them"),
    ],
)
def test_bad_checksum_settings(sha256: str, trust: bool, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        installer.expected_checksum(VERSION, ARCH, sha256, trust_server=trust)
    assert str(excinfo.value) == message


def raw(**values: str) -> dict[str, tuple[str, str]]:
    from spacetail.config.settings import INSTALL, raw_values

    env = {s.env: values.get(s.key.replace("-", "_"), "") for s in INSTALL}
    return raw_values(INSTALL, env, {})


def test_settings_from_variables(mirror: Mirror, tmp_path: Path) -> None:
    """What a Spacelift context sets for the stock-image hook, which passes no flags."""
    package = build_package(standard_members())
    mirror.publish(VERSION, ARCH, package)
    values = raw(version=VERSION, sha256=hashlib.sha256(package).hexdigest(),
                 base_url=mirror.base_url, timeout="30s")  # fmt: skip
    folder = installer.install_from_settings(values, tmp_path / "bin", ARCH, log=Log())
    assert (folder / "tailscale").read_bytes() == script(f"tailscale {VERSION}")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"version": "1.9x"}, 'SPACETAIL_TAILSCALE_VERSION: "1.9x" is not a tailscale version'),
        ({"timeout": "soon"}, "SPACETAIL_INSTALL_TIMEOUT: "),
        ({"trust_server_checksum": "maybe"}, "SPACETAIL_TAILSCALE_TRUST_SERVER_CHECKSUM: "),
        ({"version": VERSION}, "--sha256: spacetail pins no sha256 for"),
    ],
)
def test_bad_settings_from_variables(values: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        installer.install_from_settings(raw(**values), tmp_path, ARCH, log=Log())
    assert str(excinfo.value).startswith(message)
    assert leftovers(tmp_path) == []
