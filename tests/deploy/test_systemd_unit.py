"""The example systemd unit in config/systemd is one systemd accepts as it is written.

`systemd-analyze verify` loads the unit as systemd would and reports unknown keys, bad
values and an ExecStart that is not executable. The unit names /opt/uftp-adapter, so the test
points ExecStart at this environment's `uftp-adapter` and verifies an instance of the template.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "config" / "systemd" / "uftp-adapter@.service"
INSTALLED = "/opt/uftp-adapter/bin/uftp-adapter"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: install Debian's systemd package")
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return found


def _exec_start(text: str) -> list[str]:
    (line,) = [entry for entry in text.splitlines() if entry.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def _local_instance(tmp_path: Path, text: str) -> Path:
    executable = Path(sys.executable).with_name("uftp-adapter")
    assert executable.exists(), f"{executable} is not installed"
    unit = tmp_path / "uftp-adapter@cro.service"
    unit.write_text(text.replace(INSTALLED, str(executable)))
    return unit


def test_the_example_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    unit = _local_instance(tmp_path, UNIT.read_text())
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_would_catch_a_mistake_in_the_unit(tmp_path: Path) -> None:
    """The check above can fail: a key systemd does not know is reported."""
    analyze = _systemd_analyze()
    text = UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    unit = _local_instance(tmp_path, text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert "Unknown key" in result.stderr


def test_its_command_is_one_the_cli_accepts() -> None:
    argv = _exec_start(UNIT.read_text())
    assert argv[0] == INSTALLED
    executable = Path(sys.executable).with_name("uftp-adapter")
    result = subprocess.run(
        [str(executable), *argv[1:], "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout
