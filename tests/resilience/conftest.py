"""Reports what the crash tests tried, at the end of the run; a small disk to fill; the
fixtures of the tests of several processes on one PostgreSQL store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapter.keys import generate, load_private, write_private
from tests.postgres import Schema
from tests.resilience.disk import SmallDisk, small_disk
from tests.resilience.shared import CountingPeer, Processes


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


# -- several processes on one PostgreSQL store (tests/resilience/shared.py) --------------------


@pytest.fixture
def pg_schema(postgres_schema: Schema) -> str:
    """The name of a fresh schema of the test PostgreSQL (tests/conftest.py's
    `postgres_schema`: skips without a server, fails instead where CI requires one)."""
    return postgres_schema.name


@pytest.fixture
def site_keys(tmp_path: Path) -> Path:
    """dso.key/.pub and cro.key/.pub in a folder of their own."""
    folder = tmp_path / "keys"
    folder.mkdir()
    for name in ("dso", "cro"):
        write_private(folder / f"{name}.key", generate())
    return folder


@pytest.fixture
async def counting_peer(site_keys: Path) -> AsyncIterator[CountingPeer]:
    counting = CountingPeer(load_private(site_keys / "dso.key"))
    await counting.start()
    try:
        yield counting
    finally:
        await counting.stop()


@pytest.fixture
async def children(tmp_path: Path) -> AsyncIterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        await started.close()
