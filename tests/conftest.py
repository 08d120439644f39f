"""Real participants on loopback: aiohttp servers and clients, SQLite files in tmp_path.

`network` starts participants on free ports and introduces them to each other (each one's
endpoint and public key in the other's directory), as two operators exchanging their cs1
strings would.

The hooks at the end make the tests that need the official XSDs (`official_xsd` mark,
tests/official_xsd.py) skip, or fail where CI requires them, and say so in one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapter.config import DeliverySettings
from adapter.directory import Peer, StaticDirectory
from adapter.keys import PrivateKeys, generate
from adapter.participant import Participant
from adapter.router import Router
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import Role
from tests import official_xsd

#: Fast retries so that outage tests take seconds, not hours.
FAST_DELIVERY = DeliverySettings(
    deadline_seconds=20.0,
    request_timeout_seconds=5.0,
    backoff_initial_seconds=0.05,
    backoff_max_seconds=0.4,
)


class Network:
    """Builds participants that know each other."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self.participants: list[Participant] = []
        self.keys: dict[str, PrivateKeys] = {}

    def create(
        self,
        domain: str,
        role: Role,
        *,
        router: Router | None = None,
        delivery: DeliverySettings = FAST_DELIVERY,
        port: int = 0,
        store_name: str | None = None,
        **options: Any,
    ) -> Participant:
        """A participant, not started. Same `store_name` = same SQLite file (restarts)."""
        keys = self.keys.setdefault(domain, generate())
        store = SqliteStore(self._tmp / f"{store_name or domain}.sqlite3")
        participant = Participant(
            domain=domain,
            role=role,
            keys=keys,
            store=store,
            directory=StaticDirectory([]),
            router=router,
            delivery=delivery,
            port=port,
            **options,
        )
        self.participants.append(participant)
        return participant

    async def start(self, *participants: Participant) -> None:
        for participant in participants:
            await participant.start()

    def introduce(self, a: Participant, b: Participant, *, barred: bool = False) -> None:
        """Put each participant in the other's directory."""
        for me, other in ((a, b), (b, a)):
            directory = me.directory
            assert isinstance(directory, StaticDirectory)
            directory.add(self.peer(other, barred=barred and me is a))

    def peer(self, participant: Participant, **changes: Any) -> Peer:
        keys = self.keys[participant.domain]
        fields: dict[str, Any] = {
            "domain": participant.domain,
            "role": participant.role,
            "endpoint": participant.url(),
            "signing_keys": (keys.public.signing,),
            "barred": False,
        }
        fields.update(changes)
        return Peer(**fields)

    async def close(self) -> None:
        for participant in self.participants:
            with contextlib.suppress(Exception):  # already stopped by the test
                await participant.stop()


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    net = Network(tmp_path)
    try:
        yield net
    finally:
        await net.close()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0
) -> None:
    """Wait until `condition` holds; fail the test if it does not within `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


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
