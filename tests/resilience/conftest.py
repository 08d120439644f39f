"""Reports what the crash tests tried, at the end of the run."""

from __future__ import annotations

import pytest


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
