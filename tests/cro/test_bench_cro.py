"""bench/bench_cro.py as a user runs it: it refuses a PostgreSQL DSN it cannot use instead of
measuring SQLite alone in silence, and a small case runs end to end in fresh processes.

The benchmark's figures are not judged here (they depend on the machine's load): only that
it says what it measured, or why it measured nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_cro.py"


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://127.0.0.1:5432/test", "names no user"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot connect to PostgreSQL"),
    ],
    ids=["no-user", "unreachable"],
)
def test_an_unusable_postgres_dsn_is_an_error_not_a_fallback(dsn: str, problem: str) -> None:
    done = bench("--postgres-dsn", dsn, "--sizes", "0", timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert problem in done.stderr and "--stores sqlite" in done.stderr
    assert "sqlite" not in done.stdout  # nothing was measured


def test_sqlite_alone_when_asked_runs_each_case_in_a_fresh_process() -> None:
    done = bench(
        "--stores",
        "sqlite",
        "--postgres-dsn",
        "postgresql://127.0.0.1:5432/test",  # not used: not even checked
        "--sizes",
        "0",
        "--scenario",
        "resend",
        "--no-traced",
    )
    assert done.returncode in (0, 1), done.stderr  # 1: slower than the target, on a busy machine
    [line] = [line for line in done.stdout.splitlines() if line.startswith("sqlite")]
    assert line.split()[:3] == ["sqlite", "0", "resend"]
    assert "peak RSS growth" in line and "postgres" not in done.stdout
