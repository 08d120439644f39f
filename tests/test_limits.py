"""What one peer may take of a participant: its message rate (429), its share of the handler
slots and of the delivery slots, what a hostile body costs (deep nesting: 400), and the
connection limits of the [limits] table (tests/hostile/test_connections.py shows what they
do)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from adapter.config import ConfigError, load_config
from adapter.directory import Peer
from adapter.keys import generate, write_private
from adapter.participant import Participant
from adapter.router import HandlerContext, Router
from adapter.store.base import OutboundStatus
from adapter.testing import (
    FAST_DELIVERY,
    TEST_LIMITS,
    Network,
    accepting,
    composed,
    eventually,
    post,
)
from adapter.uftp import codec, envelope
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
)
from tests.uftp.samples import make_dso_portfolio_update, make_test_message

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"
XML = {"Content-Type": "text/xml; charset=utf-8"}


# -- the rate per sender, from the configuration ---------------------------------------------


async def configured_cro(network: Network, tmp_path: Path, dso: Participant, limits: str) -> str:
    """Start a CRO from a config file with `limits` as its [limits] table; its URL."""
    keys = generate()
    write_private(tmp_path / "keys" / "cro.key", keys)
    config_file = tmp_path / "config" / "cro.toml"
    config_file.parent.mkdir()
    config_file.write_text(
        f"""
[participant]
domain = "{CRO}"
role = "CRO"
signing_key = "../keys/cro.key"
listen = "127.0.0.1:0"
store = "sqlite:../var/cro.sqlite3"
versions = ["3.1.0"]

[limits]
{limits}

[[peers]]
domain = "{DSO}"
role = "DSO"
endpoint = "{dso.url()}"
public_keys = ["{network.keys[DSO].public.to_cs1()}"]
""",
        encoding="utf-8",
    )
    cro = Participant.from_config(load_config(config_file))
    network.participants.append(cro)
    await cro.start()
    dso.directory.add(Peer(CRO, Role.CRO, cro.url(), (keys.public.signing,)))  # type: ignore[attr-defined]
    return cro.url()


def sealed_test_message(network: Network) -> bytes:
    message = make_test_message(message_id=str(uuid.uuid4()))
    return envelope.seal(codec.encode(message), network.keys[DSO].signing, DSO, Role.DSO)


async def test_configured_rate_per_sender_answers_429(network: Network, tmp_path: Path) -> None:
    dso = network.create(DSO, Role.DSO)
    await network.start(dso)
    url = await configured_cro(network, tmp_path, dso, "rate_per_sender = 0.5\nburst = 3")

    statuses = [(await post(url, sealed_test_message(network)))[0] for _ in range(6)]

    assert statuses[:3] == [200, 200, 200]  # the burst
    assert statuses[3:] == [429, 429, 429]


async def test_a_sender_over_its_rate_is_paced_not_lost(network: Network, tmp_path: Path) -> None:
    dso = network.create(DSO, Role.DSO)
    await network.start(dso)
    await configured_cro(network, tmp_path, dso, "rate_per_sender = 10\nburst = 2")

    sent = [await dso.send(composed(make_dso_portfolio_update()), to=CRO) for _ in range(8)]

    async def all_delivered() -> bool:
        records = [await dso.store.get_outbound(m.message_id) for m in sent]
        return all(r is not None and r.status is OutboundStatus.DELIVERED for r in records)

    await eventually(all_delivered, timeout=15)
    statuses = [a.http_status for m in sent for a in await dso.store.attempts(m.message_id)]
    assert 429 in statuses  # some were paced by the CRO, and retried by the DSO's outbox


async def test_configured_connection_limits_reach_the_endpoint(
    network: Network, tmp_path: Path
) -> None:
    dso = network.create(DSO, Role.DSO)
    await network.start(dso)
    limits = (
        "header_timeout_seconds = 0.5\nkeepalive_timeout_seconds = 0.5\nmax_connections = 3\n"
        "body_bytes_in_flight = 40000000"
    )
    url = urlsplit(await configured_cro(network, tmp_path, dso, limits))
    cro = network.participants[-1]
    assert cro._endpoint._connections._max == 3
    assert cro._endpoint._bodies._limit == 40_000_000
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed, silent
    assert time.monotonic() - started < 2.0
    writer.close()
    assert (await post(url.geturl(), sealed_test_message(network)))[0] == 200


@pytest.mark.parametrize(
    ("limits", "complaint"),
    [
        (
            "body_bytes_in_flight = 1000",
            "limits.body_bytes_in_flight: must be at least participant.max_body_bytes (33554432)",
        ),
        ("max_connections = 0", "limits.max_connections: expected an integer >= 1, got 0"),
        ("header_timeout_seconds = 0", "limits.header_timeout_seconds: expected a positive"),
        ("keepalive_timeout_seconds = -1", "limits.keepalive_timeout_seconds: expected a pos"),
    ],
)
def test_connection_limits_are_checked(tmp_path: Path, limits: str, complaint: str) -> None:
    config_file = tmp_path / "cro.toml"
    config_file.write_text(
        f"""
[participant]
domain = "{CRO}"
role = "CRO"
signing_key = "cro.key"
listen = "127.0.0.1:0"
store = "sqlite:cro.sqlite3"
versions = ["3.1.0"]

[limits]
{limits}
"""
    )
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        load_config(config_file)


def test_the_budget_for_bodies_in_flight_follows_the_body_cap(tmp_path: Path) -> None:
    config_file = tmp_path / "cro.toml"
    config_file.write_text(
        f"""
[participant]
domain = "{CRO}"
role = "CRO"
signing_key = "cro.key"
listen = "127.0.0.1:0"
store = "sqlite:cro.sqlite3"
versions = ["3.1.0"]
max_body_bytes = 100000000
"""
    )
    assert load_config(config_file).limits.body_bytes_in_flight == 200_000_000


# -- handler slots per sender -------------------------------------------------------------------


async def test_a_slow_sender_leaves_handler_slots_to_others(network: Network) -> None:
    noisy, quiet = "dso-a.example.com", "dso-b.example.com"
    release = asyncio.Event()
    running: dict[str, int] = {noisy: 0, quiet: 0}
    most_at_once = 0
    cro_router = Router()

    @cro_router.on(DSOPortfolioUpdate)
    async def slow_for_the_noisy_one(
        message: DSOPortfolioUpdate, ctx: HandlerContext
    ) -> PayloadResponse:
        nonlocal most_at_once
        running[ctx.sender_domain] += 1
        most_at_once = max(most_at_once, running[noisy])
        try:
            if ctx.sender_domain == noisy:
                await release.wait()
        finally:
            running[ctx.sender_domain] -= 1
        return DSOPortfolioUpdateResponse()

    answers: list[PayloadResponse] = []
    noisy_router = Router()

    @noisy_router.on(DSOPortfolioUpdateResponse)
    async def collect(message: PayloadResponse, ctx: HandlerContext) -> None:
        answers.append(message)

    cro = network.create(
        CRO,
        Role.CRO,
        router=cro_router,
        delivery=dataclasses.replace(FAST_DELIVERY, handler_concurrency=4),
        limits=dataclasses.replace(TEST_LIMITS, handlers_per_sender=2),
    )
    a = network.create(noisy, Role.DSO, router=noisy_router)
    b = network.create(quiet, Role.DSO)
    await network.start(cro, a, b)
    network.introduce(cro, a)
    network.introduce(cro, b)

    flood = [
        await a.send(composed(make_dso_portfolio_update()), to=CRO) for _ in range(8)
    ]  # twice the global slots

    async def flood_acknowledged() -> bool:
        records = [await a.store.get_outbound(m.message_id) for m in flood]
        return all(r is not None and r.status is OutboundStatus.DELIVERED for r in records)

    try:
        await eventually(flood_acknowledged)  # the CRO holds all 8, their handlers queued
        await eventually(lambda: running[noisy] >= 2)

        response = await b.request(composed(make_dso_portfolio_update()), to=CRO, timeout=5)

        assert response.result is Result.ACCEPTED
        assert running[noisy] == 2  # A's handlers are still stuck
    finally:
        release.set()  # also when the test fails: stopping the CRO waits for its handlers
    await eventually(lambda: len(answers) == 8)
    assert most_at_once == 2


# -- delivery slots per peer ------------------------------------------------------------------


class Hanging:
    """A peer that accepts connections and reads requests but never answers them."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/shapeshifter/api/v3/message"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            await reader.read()  # until the client gives up
        finally:
            self.connections -= 1
            writer.close()

    async def __aenter__(self) -> Hanging:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


@pytest.fixture
async def hanging() -> AsyncIterator[Hanging]:
    async with Hanging() as peer:
        yield peer


async def test_a_hanging_peer_does_not_delay_delivery_to_others(
    network: Network, hanging: Hanging
) -> None:
    down = "cro-down.example.com"
    cro = network.create(CRO, Role.CRO, router=accepting(DSOPortfolioUpdate))
    dso = network.create(
        DSO,
        Role.DSO,
        delivery=dataclasses.replace(FAST_DELIVERY, request_timeout_seconds=10.0),
        limits=dataclasses.replace(TEST_LIMITS, deliveries_per_peer=4),
    )
    await network.start(cro, dso)
    network.introduce(cro, dso)
    dso.directory.add(  # type: ignore[attr-defined]
        Peer(down, Role.CRO, hanging.url, (generate().public.signing,))
    )

    for _ in range(80):  # more than the outbox's 64 slots
        await dso.send(composed(make_dso_portfolio_update()), to=down)
    await eventually(lambda: hanging.connections >= 4)

    started = asyncio.get_running_loop().time()
    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=3)

    assert response.result is Result.ACCEPTED
    assert asyncio.get_running_loop().time() - started < 3
    assert hanging.connections == 4  # still stuck on the down peer, and no more than its cap


# -- hostile bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [300, 100_000])
async def test_deeply_nested_body_is_400_and_the_server_serves_on(
    network: Network, depth: int
) -> None:
    answers: list[PayloadResponse] = []
    dso_router = Router()

    @dso_router.on(DSOPortfolioUpdateResponse)
    async def collect(message: PayloadResponse, ctx: HandlerContext) -> None:
        answers.append(message)

    cro = network.create(CRO, Role.CRO, router=accepting(DSOPortfolioUpdate))
    dso = network.create(DSO, Role.DSO, router=dso_router)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    valid = codec.encode(make_dso_portfolio_update())
    closing = valid.rindex(b"</")
    nested = valid[:closing] + b"<x>" * depth + b"</x>" * depth + valid[closing:]
    signed = envelope.seal(nested, network.keys[DSO].signing, DSO, Role.DSO)
    wrapper = b"<SignedMessage>" * depth + b"</SignedMessage>" * depth

    # Signed by a known peer, so the inner message is parsed (with libxml2's depth limit).
    status, text = await post(cro.url(), signed)
    assert status == 400
    assert "Excessive depth" in text  # libxml2's limit (256) for inner messages
    # Unsigned, deeply nested wrapper: refused before anything is verified (2048 there).
    assert (await post(cro.url(), wrapper))[0] == 400

    await dso.send(composed(make_dso_portfolio_update()), to=CRO)
    await eventually(lambda: len(answers) == 1)
    assert answers[0].result is Result.ACCEPTED
