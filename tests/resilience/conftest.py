"""Reports what the crash tests tried, at the end of the run; a small disk to fill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.resilience.disk import SmallDisk, small_disk


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.resilience.test_crash import TALLY

    if not TALLY.tries:
        return
    terminalreporter.section("crash points")
    terminalreporter.write_line(
        f"{TALLY.kill_points} kill points tried in {TALLY.tries} runs ("
        + ", ".join(f"{n} {how}" for how, n in sorted(TALLY.signals.items()))
        + f" sent), {TALLY.hits} in their window; "
        f"{TALLY.messages} messages checked in the stores"
    )
    for line in TALLY.lines:
        terminalreporter.write_line(f"  {line}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A tmpfs of 4 MiB at tmp_path/disk (skips where mounting is not allowed). Ask for it
    before `network`, so that the participants stop before it is unmounted."""
    with small_disk(tmp_path / "disk") as mounted:
        yield mounted
