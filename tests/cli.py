"""The command line as an operator runs it, for tests: each command a process of its own
(`python -m adapter ...`), and `serve` run until the test is done with it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def uftp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`uftp-adapter ARGS`, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "adapter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def serving(config: Path, role: str) -> Iterator[subprocess.Popen[str]]:
    """`uftp-adapter serve --config CONFIG`, once it says it serves ROLE and its /health
    answers; stopped with SIGTERM, as an operator would, which must end it cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "adapter", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving ROLE ... at URL"
        assert line.startswith(f"serving {role}"), line
        url = line.rsplit(" at ", 1)[1].strip().replace("/shapeshifter/api/v3/message", "/health")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
