"""Real participants on loopback: aiohttp servers and clients, SQLite files in a folder.

`Network` starts participants on free ports and introduces them to each other (each one's
endpoint and public key in the other's directory), as two operators exchanging their cs1
strings would. Nothing is simulated: what passes between them is signed, POSTed, stored and
answered as in production.

    network = Network(tmp_path)
    cro = network.create("cro.example.com", Role.CRO, router=accepting(DSOPortfolioUpdate))
    dso = network.create("dso.example.com", Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    response = await dso.request(composed(update), to="cro.example.com")
    ...
    await network.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from adapter.directory import Peer, StaticDirectory
from adapter.keys import PrivateKeys, generate
from adapter.participant import Participant
from adapter.router import Router
from adapter.settings import Delivery, Limits, ListenAddress
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import Role

__all__ = ["FAST_DELIVERY", "TEST_LIMITS", "Network", "eventually", "free_port"]

#: Fast retries so that outage tests take seconds, not hours.
FAST_DELIVERY = Delivery(
    deadline_seconds=20.0,
    request_timeout_seconds=5.0,
    backoff_initial_seconds=0.05,
    backoff_max_seconds=0.4,
)

#: The configuration's limits, but for the TimeStamp window: test messages are composed
#: once with the TimeStamp they keep (`adapter.testing.messages`), whatever the day.
TEST_LIMITS = Limits(time_stamp_future_seconds=math.inf, time_stamp_past_seconds=math.inf)


class Network:
    """Builds participants that know each other."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.participants: list[Participant] = []
        self.keys: dict[str, PrivateKeys] = {}

    def create(
        self,
        domain: str,
        role: Role,
        *,
        router: Router | None = None,
        delivery: Delivery = FAST_DELIVERY,
        limits: Limits = TEST_LIMITS,
        host: str = "127.0.0.1",
        port: int = 0,
        store_name: str | None = None,
        **options: Any,
    ) -> Participant:
        """A participant, not started, listening on `host`:`port` (0: a free port). Same
        `store_name` = same SQLite file (restarts). `options` are `Participant`'s (`tls`,
        `clock`, ...)."""
        keys = self.keys.setdefault(domain, generate())
        store = SqliteStore(self._folder / f"{store_name or domain}.sqlite3")
        participant = Participant(
            domain=domain,
            role=role,
            keys=keys,
            store=store,
            directory=StaticDirectory([]),
            router=router,
            listen=ListenAddress(host, port),
            delivery=delivery,
            limits=limits,
            **options,
        )
        self.participants.append(participant)
        return participant

    async def start(self, *participants: Participant) -> None:
        for participant in participants:
            await participant.start()

    def introduce(self, a: Participant, b: Participant, *, barred: bool = False) -> None:
        """Put each participant in the other's directory (`barred`: `a` bars `b`)."""
        for me, other in ((a, b), (b, a)):
            directory = me.directory
            assert isinstance(directory, StaticDirectory)
            directory.add(self.peer(other, barred=barred and me is a))

    def peer(self, participant: Participant, **changes: Any) -> Peer:
        """`participant` as its peers' directories know it, with `changes`."""
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
        """Stop every participant still running."""
        for participant in self.participants:
            with contextlib.suppress(Exception):  # already stopped by the test
                await participant.stop()


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0
) -> None:
    """Wait until `condition` holds; raise AssertionError if it does not within `timeout`."""
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a configuration file; a
    `Network` participant takes port 0 and learns its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
