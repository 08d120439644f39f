"""The tests that need the official XSDs say so when the XSDs are absent, and CI requires them.

Each case runs pytest in a subprocess, with this suite's own conftest as its plugin, on a tiny
test file that needs the schemas and one that does not, with `UFTP_OFFICIAL_XSD_DIR` pointing
at a missing, an incomplete or a complete folder. `.ci/run` is run from a copy of the
repository whose test command only reports what it was given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import official_xsd

TINY_TESTS = """
import pytest

@pytest.mark.official_xsd
def test_needs_them_one() -> None:
    pass

@pytest.mark.official_xsd
def test_needs_them_two() -> None:
    pass

def test_needs_nothing() -> None:
    pass
"""


def complete_folder(root: Path) -> Path:
    """A folder with every file the tests read (empty: only their presence is judged)."""
    for folder in official_xsd.VERSION_DIRS.values():
        (root / folder).mkdir(parents=True)
        for name in official_xsd.FILES:
            (root / folder / name).touch()
    return root


def run_pytest(
    tmp_path: Path, xsd_dir: Path, *, require: bool = False, target: str | None = None
) -> subprocess.CompletedProcess[str]:
    plugin = []
    if target is None:  # outside the repository: its conftest comes in as a plugin
        tests = tmp_path / "tiny" / "test_tiny.py"
        tests.parent.mkdir(exist_ok=True)
        tests.write_text(TINY_TESTS)
        target, plugin = str(tests), ["-p", "tests.conftest"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UFTP_", "PYTEST_"))}
    env[official_xsd.DIR_VARIABLE] = str(xsd_dir)
    if require:
        env[official_xsd.REQUIRE_VARIABLE] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, target],
        cwd=official_xsd.REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def summary_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if official_xsd.DIR_VARIABLE in line]


def test_absent_schemas_skip_and_one_summary_line_says_what_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    run = run_pytest(tmp_path, missing)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 2 skipped" in run.stdout
    (line,) = summary_lines(run.stdout)
    assert line.startswith("2 tests skipped: official UFTP XSDs absent")
    assert str(missing) in line and "no such folder" in line
    assert "3.0.0/, 3.1.0/, draft/" in line and "UFTP-cro.xsd" in line
    assert f"set {official_xsd.DIR_VARIABLE} to" in line
    assert official_xsd.DEFAULT_DIR in line


def test_required_mode_fails_the_tests_that_need_them(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, tmp_path / "nowhere", require=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed, 2 errors" in run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1]
    (line,) = summary_lines(run.stdout)
    assert line.startswith("2 tests failed at setup: official UFTP XSDs absent")


def test_an_incomplete_folder_counts_as_absent_and_is_named(tmp_path: Path) -> None:
    folder = complete_folder(tmp_path / "xsd")
    (folder / "draft" / "UFTP-cro-dso.xsd").unlink()
    run = run_pytest(tmp_path, folder)
    (line,) = summary_lines(run.stdout)
    assert "lacks draft/UFTP-cro-dso.xsd" in line
    assert "1 passed, 2 skipped" in run.stdout


def test_a_complete_folder_runs_them_and_adds_no_line(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, complete_folder(tmp_path / "xsd"), require=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout
    assert summary_lines(run.stdout) == []


def test_the_repository_tests_read_the_setting(tmp_path: Path) -> None:
    """A real test that compares with the official schemas follows the variable."""
    target = (
        "tests/uftp/test_envelope.py::test_sealed_document_is_valid_against_the_official_schema"
    )
    run = run_pytest(tmp_path, tmp_path / "nowhere", target=target)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 skipped" in run.stdout
    (line,) = summary_lines(run.stdout)
    assert line.startswith("3 tests skipped")


def test_a_relative_setting_is_taken_from_the_repository_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(official_xsd.DIR_VARIABLE, raising=False)
    default = (official_xsd.REPOSITORY / ".." / "shared" / "uftp" / "xsd").resolve()
    assert official_xsd.directory() == default
    monkeypatch.setenv(official_xsd.DIR_VARIABLE, "spec/xsd")
    assert official_xsd.directory() == official_xsd.REPOSITORY / "spec" / "xsd"


# --- .ci/run ----------------------------------------------------------------------------------


def ci_copy(tmp_path: Path) -> Path:
    """The repository's .ci/run, with a test command that reports its environment."""
    repository = tmp_path / "repository"
    (repository / ".ci").mkdir(parents=True)
    (repository / "scripts").mkdir()
    shutil.copy(official_xsd.REPOSITORY / ".ci" / "run", repository / ".ci" / "run")
    (repository / "scripts" / "test.sh").write_text(
        'echo "tests ran with $UFTP_OFFICIAL_XSD_DIR require=$UFTP_REQUIRE_OFFICIAL_XSD"\n'
    )
    return repository


def run_ci(repository: Path, xsd_dir: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UFTP_")}
    if xsd_dir is not None:
        env[official_xsd.DIR_VARIABLE] = xsd_dir
    return subprocess.run(
        ["bash", str(repository / ".ci" / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ci_refuses_to_run_without_the_schemas(tmp_path: Path) -> None:
    repository = ci_copy(tmp_path)
    run = run_ci(repository, str(tmp_path / "nowhere"))
    assert run.returncode == 1
    assert "tests ran" not in run.stdout
    assert "official UFTP XSDs are not at" in run.stderr and "no such folder" in run.stderr
    assert official_xsd.DIR_VARIABLE in run.stderr
    # The default beside the repository is absent here too.
    assert run_ci(repository, None).returncode == 1


def test_ci_refuses_an_incomplete_folder(tmp_path: Path) -> None:
    folder = complete_folder(tmp_path / "xsd")
    (folder / "3.1.0" / "UFTP-common.xsd").unlink()
    run = run_ci(ci_copy(tmp_path), str(folder))
    assert run.returncode == 1
    assert "3.1.0/UFTP-common.xsd" in run.stderr


def test_ci_requires_the_schemas_of_the_tests(tmp_path: Path) -> None:
    repository = ci_copy(tmp_path)
    complete_folder(tmp_path / "xsd")
    run = run_ci(repository, "../xsd")  # relative: from the repository root
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"tests ran with {tmp_path / 'xsd'} require=1"
