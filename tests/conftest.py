"""Real participants on loopback (`adapter.testing.Network`): aiohttp servers and clients,
SQLite files in tmp_path.

`network` starts participants on free ports and introduces them to each other (each one's
endpoint and public key in the other's directory), as two operators exchanging their cs1
strings would.

`postgres_schema` is a schema of the test's own on the test PostgreSQL (tests/postgres.py:
skips without a server, fails instead where CI or UFTP_TEST_POSTGRES_DSN requires one).

The hooks at the end make the tests that need the official XSDs (`official_xsd` mark,
tests/official_xsd.py) skip, or fail where CI requires them, and say so in one summary line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# Importable from here as before `adapter.testing` held them.
from adapter.testing import FAST_DELIVERY as FAST_DELIVERY
from adapter.testing import Network
from adapter.testing import eventually as eventually
from tests import official_xsd
from tests.postgres import Schema, fresh_schema


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    net = Network(tmp_path)
    try:
        yield net
    finally:
        await net.close()


@pytest.fixture
async def postgres_schema() -> AsyncIterator[Schema]:
    """A fresh schema of the test PostgreSQL, dropped after the test."""
    async with fresh_schema() as schema:
        yield schema


# --- the official XSDs: skip or fail, and say so ---------------------------------------------

#: How many tests were skipped and failed for want of the official XSDs, in this run.
_WITHOUT_XSD = pytest.StashKey[dict[str, int]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"official_xsd: reads the official UFTP XSDs ({official_xsd.DIR_VARIABLE}); skips "
        f"without them, fails instead under {official_xsd.REQUIRE_VARIABLE}=1",
    )
    config.stash[_WITHOUT_XSD] = {"skipped": 0, "failed": 0}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("official_xsd") is None or official_xsd.available():
        return
    counts = item.config.stash[_WITHOUT_XSD]
    if official_xsd.required():
        counts["failed"] += 1
        pytest.fail(
            f"{official_xsd.problem()}; {official_xsd.REQUIRE_VARIABLE} is set, so this test "
            "may not skip",
            pytrace=False,
        )
    counts["skipped"] += 1
    pytest.skip(official_xsd.problem())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line when tests went without the official XSDs: how many, why, how to fix it."""
    counts = config.stash.get(_WITHOUT_XSD, {})
    skipped, failed = counts.get("skipped", 0), counts.get("failed", 0)
    if not (skipped or failed):
        return
    what = f"{failed:,} tests failed at setup" if failed else f"{skipped:,} tests skipped"
    terminalreporter.write_line(
        f"{what}: {official_xsd.problem()}; {official_xsd.how_to_fix()}",
        yellow=not failed,
        red=bool(failed),
        bold=True,
    )
