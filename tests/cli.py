"""The command line as an operator runs it, for tests: each command a process of its own
(`python -m adapter ...`); `serve`, run until the test is done with it, is `tests.serve`."""

from __future__ import annotations

import subprocess
import sys


def uftp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`uftp-adapter ARGS`, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "adapter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
