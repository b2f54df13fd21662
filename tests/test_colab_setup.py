"""The notebook's setup cell on a pretend Colab: a local bare repository is the "remote", a
fake `google.colab` module says where we are, and a fake pip records the install.

Each run is a fresh interpreter without site-packages (`-I -S`), as a fresh Colab session is:
lft_helpers is importable there only through what the cell itself does.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "LightweightFineTuning.ipynb"
NAME = "lightweight-fine-tuning"  # the folder a clone of the remote lands in
FAKE_PIP = """
import json, os, pathlib, sys
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_PIP_FAIL"):
    sys.exit("ERROR: Could not find a version that satisfies the requirement peft")
project = pathlib.Path(sys.argv[-1].split("[")[0]).resolve()
dist = pathlib.Path(os.environ["FAKE_SITE"]) / "lft_helpers-0.1.0.dist-info"
dist.mkdir(parents=True, exist_ok=True)
(dist / "METADATA").write_text("Metadata-Version: 2.1\\nName: lft-helpers\\nVersion: 0.1.0\\n")
(dist / "direct_url.json").write_text(json.dumps({"url": project.as_uri()}))
"""
BOOT = """
import os, sys, types
sys.path[:0] = ["", os.environ["FAKE_SITE"], *filter(None, [os.environ.get("EXTRA_PATH")])]
if os.environ.get("FAKE_COLAB"):
    google, colab = types.ModuleType("google"), types.ModuleType("google.colab")
    google.colab = colab
    sys.modules.update({"google": google, "google.colab": colab})
source = open(os.environ["SETUP_CELL"], encoding="utf-8").read()
exec(compile(source, "setup cell", "exec"), {"__name__": "__main__"})
import lft_helpers
print("IMPORTED", lft_helpers.__file__)
print("CWD", os.getcwd())
print("PRESET", os.environ.get("LFT_PRESET"))
"""


def notebook_cells() -> list[dict]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def setup_cell_source() -> str:
    (cell,) = [
        c
        for c in notebook_cells()
        if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])
    ]
    return "".join(cell["source"])


def git(*args, cwd=None):
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pretend_colab(tmp_path):
    """A remote with a minimal project, a fake pip and an empty session folder."""
    source = tmp_path / "source"
    (source / "lft_helpers").mkdir(parents=True)
    (source / "lft_helpers" / "__init__.py").write_text('"""The remote copy."""\n')
    (source / "pyproject.toml").write_text('[project]\nname = "lft-helpers"\nversion = "0.1.0"\n')
    git("init", "-q", "-b", "main", cwd=source)
    git("add", ".", cwd=source)
    git("commit", "-q", "-m", "init", cwd=source)
    remote = tmp_path / f"{NAME}.git"
    git("clone", "-q", "--bare", str(source), str(remote))
    (tmp_path / "fake-pip" / "pip").mkdir(parents=True)
    (tmp_path / "fake-pip" / "pip" / "__init__.py").write_text("")
    (tmp_path / "fake-pip" / "pip" / "__main__.py").write_text(FAKE_PIP)
    (tmp_path / "site").mkdir()
    (tmp_path / "content").mkdir()
    (tmp_path / "setup_cell.py").write_text(setup_cell_source(), encoding="utf-8")
    return tmp_path


def run_cell(root: Path, cwd: Path | None = None, *, colab=True, **env):
    """The setup cell in a fresh interpreter; the remote is the local bare repository."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LFT_", "PYTHON"))}
    variables = {
        **keep,
        "LFT_REPO_URL": (root / f"{NAME}.git").as_uri(),
        "PYTHONPATH": str(root / "fake-pip"),  # seen by the cell's `python -m pip` only
        "FAKE_SITE": str(root / "site"),
        "FAKE_PIP_LOG": str(root / "pip.log"),
        "SETUP_CELL": str(root / "setup_cell.py"),
        **({"FAKE_COLAB": "1"} if colab else {}),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", BOOT],
        cwd=cwd or root / "content",
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
    )


def pip_calls(root: Path) -> list[list[str]]:
    log = root / "pip.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_first_run_clones_installs_and_imports_the_clone(pretend_colab):
    clone = pretend_colab / "content" / NAME
    out = run_cell(pretend_colab)
    assert out.returncode == 0, out.stderr
    assert f"IMPORTED {clone / 'lft_helpers' / '__init__.py'}" in out.stdout
    assert f"CWD {clone}" in out.stdout
    assert "PRESET cpu" in out.stdout  # Colab's default: minutes on a T4, not `full`
    assert pip_calls(pretend_colab) == [["install", "-q", "-e", f"{clone}[offline]"]]


def test_running_it_again_neither_clones_nor_installs(pretend_colab):
    clone = pretend_colab / "content" / NAME
    assert run_cell(pretend_colab).returncode == 0
    (clone / "kept.txt").write_text("work of the first session")
    # After a restart: the same folder, and a remote that would fail if asked again.
    unreachable = (pretend_colab / "gone" / f"{NAME}.git").as_uri()
    for cwd in (pretend_colab / "content", clone):
        again = run_cell(pretend_colab, cwd, LFT_REPO_URL=unreachable)
        assert again.returncode == 0, again.stderr
        assert f"CWD {clone}" in again.stdout
    assert (clone / "kept.txt").is_file()
    assert len(pip_calls(pretend_colab)) == 1


def test_a_clone_found_through_its_install_is_used_from_anywhere(pretend_colab, tmp_path):
    clone = pretend_colab / "content" / NAME
    assert run_cell(pretend_colab).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_cell(pretend_colab, elsewhere, EXTRA_PATH=str(clone))  # as the editable install
    assert out.returncode == 0, out.stderr
    assert f"CWD {clone}" in out.stdout and not (elsewhere / NAME).exists()
    assert len(pip_calls(pretend_colab)) == 1


def test_a_failed_clone_stops_with_one_message_that_says_what_to_do(pretend_colab):
    wrong = (pretend_colab / "no-such-repo" / f"{NAME}.git").as_uri()
    out = run_cell(pretend_colab, LFT_REPO_URL=wrong)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "CalledProcessError" not in out.stderr
    message = out.stderr.strip()
    assert message.startswith(f"Could not clone {wrong} (")
    assert "LFT_REPO_URL" in message and "run this cell again" in message
    assert not (pretend_colab / "content" / NAME).exists() and pip_calls(pretend_colab) == []


def test_a_folder_left_by_an_interrupted_clone_is_named(pretend_colab):
    (pretend_colab / "content" / NAME).mkdir()
    out = run_cell(pretend_colab)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "holds no lft_helpers" in out.stderr and f"rm -rf {pretend_colab}" in out.stderr


def test_a_failed_install_stops_with_pips_reason_and_a_rerun_recovers(pretend_colab):
    out = run_cell(pretend_colab, FAKE_PIP_FAIL="1")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "Installing lft_helpers from" in out.stderr
    assert "satisfies the requirement peft" in out.stderr and "Restart the session" in out.stderr
    again = run_cell(pretend_colab)  # the clone is kept: only the install is repeated
    assert again.returncode == 0, again.stderr
    assert len(pip_calls(pretend_colab)) == 2


def test_outside_colab_nothing_is_cloned_and_a_missing_install_is_explained(pretend_colab):
    out = run_cell(pretend_colab, colab=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "lft_helpers is not importable" in out.stderr and "pip install -e" in out.stderr
    assert not (pretend_colab / "content" / NAME).exists()
    local = run_cell(pretend_colab, ROOT, colab=False)  # a checkout: used as it is
    assert local.returncode == 0, local.stderr
    assert f"CWD {ROOT}" in local.stdout and "PRESET None" in local.stdout
    assert pip_calls(pretend_colab) == []


def test_the_repository_address_agrees_everywhere():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (address,) = re.findall(r'^Repository = "(.+)"$', pyproject, re.MULTILINE)  # [project.urls]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", address), address
    (default,) = re.findall(r'^DEFAULT_REPO_URL = "(.+)"$', setup_cell_source(), re.MULTILINE)
    assert default == address
    badge = address.replace("https://github.com/", "https://colab.research.google.com/github/")
    badge += "/blob/main/LightweightFineTuning.ipynb"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    markdown = "".join(
        "".join(c["source"]) for c in notebook_cells() if c["cell_type"] == "markdown"
    )
    for where, text in (("README.md", readme), ("the notebook's markdown", markdown)):
        links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", text)
        assert links == [badge], where
