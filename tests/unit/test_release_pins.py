"""Installs that do not move: every place that holds the hook lines (terraform/hooks.json, which
the module reads; docs/other-install-paths.md; the plugin's manifest; the e2e runs, which take
that page's and the plugin's) installs `spacetail==<the package's version>` by default, and
the plugin, the image and the package name the same version."""

from __future__ import annotations

import re
import tomllib

import spacetail
from tests import install_docs, terraform_module
from tests.helpers import REPO

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["version"]
DEFAULT = f"${{SPACETAIL_PIP_SPEC:-spacetail=={VERSION}}}"


def pip_defaults(text: str) -> list[str]:
    return re.findall(r"\$\{SPACETAIL_PIP_SPEC:-[^}]*\}", text)


def test_the_hooks_install_the_packages_own_version_by_default() -> None:
    install_line = terraform_module.hooks()["install"][1]
    assert pip_defaults(install_line) == [DEFAULT]
    places = {
        "terraform/hooks.json": 1,
        "docs/other-install-paths.md": 1,
        "plugin/plugin.yaml": len(terraform_module.PHASES),
    }
    for name, count in places.items():
        assert pip_defaults((REPO / name).read_text("utf-8")) == [DEFAULT] * count, name


def test_the_plugin_the_image_and_the_package_name_one_version() -> None:
    assert spacetail.__version__ == VERSION
    assert (
        install_docs.yaml_load(install_docs.PLUGIN_MANIFEST.read_text("utf-8"))["version"]
        == VERSION
    )
    dockerfile = (REPO / "container" / "Dockerfile").read_text("utf-8")
    assert re.findall(r"^ARG SPACETAIL_VERSION=(\S+)$", dockerfile, re.M) == [VERSION]
