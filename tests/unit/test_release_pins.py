"""Installs that do not move and name nothing a stranger could publish: the hook lines
(terraform/hooks.json, which the module reads, and the plugin's manifest, which carries them) run
the pyz whose sha256 they hold, and name no registry package by default; the plugin, the image
and the package name the same version."""

from __future__ import annotations

import re
import tomllib

import spacetail
from tests import install_docs, terraform_module
from tests.helpers import REPO

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["version"]


def pip_defaults(text: str) -> list[str]:
    return re.findall(r"\$\{SPACETAIL_PIP_SPEC:-[^}]*\}", text)


def test_no_hook_line_installs_a_registry_package_by_default() -> None:
    """SPACETAIL_PIP_SPEC is opt-in (a package of your own index): no default, anywhere the
    hook lines are kept; the plugin does not even read it."""
    hooks = terraform_module.HOOKS.read_text("utf-8")
    manifest = install_docs.plugin_manifest()
    plugin_hooks = " ".join(
        line for lines in install_docs.plugin_context()["hooks"].values() for line in lines
    )
    for name, text in {"terraform/hooks.json": hooks, "plugin manifest": plugin_hooks}.items():
        assert pip_defaults(text) == [], name
        assert "spacetail==" not in text, name
        assert "pip install" not in text or name == "terraform/hooks.json", name
    assert "SPACETAIL_PIP_SPEC" not in str(manifest)


def test_the_plugin_the_image_and_the_package_name_one_version() -> None:
    assert spacetail.__version__ == VERSION
    assert install_docs.plugin_manifest()["version"] == VERSION
    dockerfile = (REPO / "container" / "Dockerfile").read_text("utf-8")
    assert re.findall(r"^ARG SPACETAIL_VERSION=(\S+)$", dockerfile, re.M) == [VERSION]
