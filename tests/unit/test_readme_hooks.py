"""The documented runner-image hook lines (docs/other-install-paths.md) are the shared ones
(terraform/hooks.json) that the Terraform module uses with `install = false`, for every phase; no
`pip install --user` anywhere. (The stock image's way is the module with the pyz:
docs/spacelift-setup.md.)"""

from __future__ import annotations

import pytest

from tests import install_docs, terraform_module

pytest.importorskip("yaml")


def test_runner_image_hooks_are_the_shared_ones() -> None:
    hooks = install_docs.section_hooks("3. The hooks", "docs/other-install-paths.md")
    source = terraform_module.hooks()
    for phase in install_docs.PHASES:
        assert hooks[f"before_{phase}"] == source["up"], phase
        assert hooks[f"after_{phase}"] == source["down"], phase


def test_no_user_installs_and_one_placeholder() -> None:
    """The README's commands run as they are (no placeholder for where spacetail comes from);
    the pages of docs/ use one placeholder, `<org>`, where they must name a repository."""
    readme = install_docs.README.read_text(encoding="utf-8")
    assert "<org>" not in readme
    for path in install_docs.pages():
        text = path.read_text(encoding="utf-8")
        assert "pip install --user" not in text, path
        assert "OWNER" not in text, path
        urls = {u for u in text.split() if "github.com/" in u and "/spacetail" in u}
        assert all("<org>" in u for u in urls), (path, urls)


def test_try_it_installs_the_clone_into_a_venv() -> None:
    assert install_docs.quick_start() == [
        "python3 -m venv .venv && .venv/bin/pip install --quiet .",
        ".venv/bin/spacetail --version",
    ]
