"""The GitHub workflows' supply chain: actions pinned by commit, no persisted credentials,
least permissions, provenance for the image, and zizmor's offline audit clean."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import find_tool

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
ALL = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def steps(name: str) -> list[dict[str, Any]]:
    return [step for job in load(name)["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("name", ALL)
def test_every_action_is_pinned_to_a_commit_with_its_version_named(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    uses = re.findall(r"^\s*(?:- )?uses:\s*(.+)$", text, re.M)
    assert uses, name
    for line in uses:
        local = r"\./\.github/workflows/[\w.-]+\.yml( # zizmor: ignore\[[\w-]+\])?"
        if line.startswith("./"):
            assert re.fullmatch(local, line.strip()), line
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*", line.strip()), line


@pytest.mark.parametrize("name", ALL)
def test_checkout_does_not_persist_credentials(name: str) -> None:
    for step in steps(name):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, (name, step)


@pytest.mark.parametrize("name", ALL)
def test_least_permissions_per_job(name: str) -> None:
    data = load(name)
    assert data["permissions"] == {}, "the workflow grants nothing; each job asks for its own"
    for job_name, job in data["jobs"].items():
        assert "permissions" in job, f"{name}: job {job_name} names no permissions"
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        allowed = {
            "image.yml": {"packages", "id-token", "attestations"},
            "release.yml": {"id-token", "contents", "packages", "attestations"},
            "bump-tailscale.yml": {"contents", "pull-requests"},
        }.get(name, set())
        assert writes <= allowed, (name, job_name, writes)


def test_image_is_attested() -> None:
    build = next(s for s in steps("image.yml") if s.get("id") == "build")
    assert build["with"]["provenance"] == "mode=max"
    assert build["with"]["sbom"] is True
    attest = next(
        s for s in steps("image.yml") if "attest-build-provenance@" in str(s.get("uses", ""))
    )
    assert attest["with"]["subject-digest"] == "${{ steps.build.outputs.digest }}"
    assert attest["with"]["push-to-registry"] is True


@pytest.mark.parametrize("persona", ["regular", "auditor"])
def test_zizmor_finds_nothing(persona: str) -> None:
    """Clean offline; the auditor persona's findings are fixed or explained (.github/zizmor.yml
    and the ignore comments say why)."""
    zizmor = find_tool("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (pip install zizmor)")
    result = subprocess.run(
        [
            zizmor,
            "--offline",
            "--no-progress",
            f"--persona={persona}",
            ".github/workflows",
            ".github/dependabot.yml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


def needs(job: dict[str, Any]) -> set[str]:
    value = job.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def test_release_runs_only_for_a_tag_on_main_whose_ci_passed_on_main() -> None:
    jobs = load("release.yml")["jobs"]
    gate = jobs["gate"]
    assert gate["permissions"] == {"actions": "read", "contents": "read"}
    (check,) = gate["steps"]
    script = check["run"]
    # A successful CI run of a push to main: not a pull request's, not another branch's.
    assert "gh run list --workflow ci.yml --branch main --event push" in script
    assert '--commit "$GITHUB_SHA"' in script and "--status success" in script
    assert "compare/main...${GITHUB_SHA}" in script and "identical | behind" in script
    assert script.count("exit 1") == 2
    # Every other job waits for the gate, directly or through another job.
    for name in jobs:
        seen, todo = set(), needs(jobs[name])
        while todo:
            job = todo.pop()
            seen.add(job)
            todo |= needs(jobs[job]) - seen
        assert name == "gate" or "gate" in seen, name


def test_release_publishes_whole_or_not_at_all() -> None:
    """Built and checked first (assets, and the image without a push), then a draft release,
    then the image pushed, then PyPI (irreversible, last), then the draft made public."""
    jobs = load("release.yml")["jobs"]
    assert needs(jobs["build"]) == {"gate"}
    assert jobs["image-check"]["with"] == {"mode": "check"}
    assert needs(jobs["draft"]) == {"build", "image-check"}
    assert jobs["image"]["with"] == {"mode": "publish"}
    assert needs(jobs["image"]) == {"draft"}
    assert needs(jobs["publish"]) == {"image"}
    assert needs(jobs["github-release"]) == {"publish", "image"}
    draft = " ".join(str(s.get("run", "")) for s in jobs["draft"]["steps"])
    assert 'gh release create "$GITHUB_REF_NAME" --draft' in draft
    for asset in ("spacetail.pyz", "spacetail.pyz.sha256", "plugin.yaml", "spacetail-terraform-"):
        assert asset in draft, asset
    public = " ".join(str(s.get("run", "")) for s in jobs["github-release"]["steps"])
    assert 'gh release edit "$GITHUB_REF_NAME" --draft=false' in public
    build = " ".join(str(s.get("run", "")) for s in jobs["build"]["steps"])
    assert "cmp dist/spacetail.pyz again/spacetail.pyz" in build
    assert "spaceforge generate plugin/plugin.py -o dist/plugin.yaml" in build
    assert "sha256sum -c spacetail.pyz.sha256" in build
    # image.yml pushes nothing in check mode.
    image = load("image.yml")
    triggers = next(v for k, v in image.items() if k in ("on", True))
    assert triggers["workflow_call"]["inputs"]["mode"]["default"] == "publish"
    mode = next(s for s in steps("image.yml") if s.get("id") == "mode")
    assert '[ "$MODE" != check ]' in mode["run"]
    build_push = next(s for s in steps("image.yml") if s.get("id") == "build")
    assert build_push["with"]["push"] == "${{ steps.mode.outputs.push == 'true' }}"


def test_release_publishes_the_package_the_image_and_a_github_release() -> None:
    jobs = load("release.yml")["jobs"]
    publish = jobs["publish"]
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    assert any("pypa/gh-action-pypi-publish@" in str(s.get("uses")) for s in publish["steps"])
    assert "password" not in str(publish), "trusted publishing needs no token"
    image = jobs["image"]
    assert image["uses"].startswith("./.github/workflows/image.yml")
    assert image["permissions"]["attestations"] == "write"
    # YAML 1.1 reads the bare key `on` as true.
    triggers = next(v for k, v in load("image.yml").items() if k in ("on", True))
    assert "workflow_call" in triggers
    assert jobs["draft"]["permissions"] == {"contents": "write"}
    text = " ".join(str(s.get("run", "")) for s in jobs["draft"]["steps"])
    assert "gh release create" in text
    assert "CHANGELOG.md" in text and "--notes-file notes.md" in text


@pytest.mark.parametrize("name", ALL)
def test_every_tool_installed_by_pip_is_pinned(name: str) -> None:
    """A new release of a build or test tool cannot change a build without a commit."""
    for step in steps(name):
        for line in str(step.get("run", "")).splitlines():
            if "pip install" not in line:
                continue
            words = line.split("pip install", 1)[1].split(";")[0].split()
            packages = [w.strip('"') for w in words if not w.startswith("-")]
            assert packages, line
            # An exact version, or the version being released (install-from-pypi).
            exact = r"[\w.-]+==([\w.]+|\$\{version\})"
            assert all(re.fullmatch(exact, p) for p in packages), line


def test_the_bump_tests_what_it_proposes_and_says_only_that() -> None:
    (job,) = load("bump-tailscale.yml")["jobs"].values()
    names = [str(s.get("name", s.get("uses", ""))) for s in job["steps"]]
    test = next(i for i, n in enumerate(names) if n.startswith("Test the bump"))
    opened = next(
        i for i, n in enumerate(names) if "create-pull-request" in n or "pull request" in n
    )
    assert test < opened
    run = job["steps"][test]["run"]
    assert "tox -e lint,type,tests" in run and "tox -e realnet" in run
    assert job["steps"][test]["if"] == "steps.bump.outputs.changed == 'true'"
    body = job["steps"][opened]["with"]["body"]
    assert "`tox -e lint,type,tests` and `tox -e realnet`" in body
    assert "The image workflow builds and tests it" not in body
    assert "CI does not start" in body


def test_the_changelog_has_the_packages_version() -> None:
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {version}\n", 1)[1].split("\n## ", 1)[0]
    assert section.strip()


def test_project_urls_and_their_placeholder() -> None:
    import tomllib

    urls = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["urls"]
    assert set(urls) >= {"Homepage", "Source", "Issues", "Changelog"}
    assert all(url.startswith("https://github.com/<org>/spacetail") for url in urls.values())
    # The release writes the repository's own address before it builds.
    build = load("release.yml")["jobs"]["build"]["steps"]
    runs = [str(s.get("run", "")) for s in build]
    swap = next(i for i, r in enumerate(runs) if "https://github.com/<org>/spacetail" in r)
    assert "${GITHUB_SERVER_URL}/${GITHUB_REPOSITORY}" in runs[swap]
    assert swap < next(i for i, r in enumerate(runs) if "python -m build" in r)


def test_dependabot_keeps_actions_and_python_dependencies_fresh() -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    ecosystems = {u["package-ecosystem"]: u for u in data["updates"]}
    assert set(ecosystems) == {"github-actions", "pip"}
    for update in ecosystems.values():
        assert update["schedule"]["interval"] == "weekly"
        assert update["cooldown"]["default-days"] >= 1


def test_the_weekly_bump_commits_exactly_the_files_its_tool_rewrites() -> None:
    """A pin moved to a new file and not added to the pull request would be left behind."""
    from tools.bump_tailscale import PINS

    (step,) = [s for s in steps("bump-tailscale.yml") if "add-paths" in s.get("with", {})]
    committed = set(step["with"]["add-paths"].split())
    assert committed == {pin.path for pin in PINS}
