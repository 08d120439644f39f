"""Peer outages: our DSO delivering to a peer that answers 503, 404, resets connections, is
slower than our timeout, refuses connections, or refuses the message for good.

The peer is a small aiohttp server on loopback that answers from a script, one behaviour per
request it receives. What is asserted is what an operator relies on: temporary trouble is
retried with growing intervals until the peer recovers, and then the message is delivered
(once more, the same bytes); a permanent refusal ends the attempts at once and is reported to
the caller; retrying stops at the deadline; every attempt is in the store and in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pytest
from aiohttp import web

from adapter.config import DeliverySettings
from adapter.directory import Peer, StaticDirectory
from adapter.keys import generate
from adapter.outbox import backoff_delay
from adapter.participant import DeliveryFailed, Participant
from adapter.store.base import DeliveryAttempt, OutboundRecord, OutboundStatus
from adapter.testing import Network, eventually, free_port
from adapter.uftp.messages import Role
from tests.resilience.dso_driver import portfolio_update

DSO = "dso.outage.test"
CRO = "cro.outage.test"
#: Growing delays that stay short: 0.1, 0.2, 0.4, 0.8 s (ceilings; equal jitter halves the
#: lower bound), capped at 1.6 s.
SCHEDULE = DeliverySettings(
    deadline_seconds=30.0,
    request_timeout_seconds=0.5,
    backoff_initial_seconds=0.1,
    backoff_max_seconds=1.6,
)
#: Quick retries for tests that are not about the intervals.
QUICK = DeliverySettings(
    deadline_seconds=30.0,
    request_timeout_seconds=0.3,
    backoff_initial_seconds=0.02,
    backoff_max_seconds=0.1,
)
#: How late a timer may fire and an attempt may take, on a loaded CI machine.
SLACK = 0.15

Behaviour = int | Literal["reset", "slow"]


@dataclass(frozen=True)
class Hit:
    at: float  # time.time(), comparable with the store's attempted_at
    body: bytes
    behaviour: Behaviour


class ScriptedPeer:
    """A peer that answers request n with script[n], and `then` once the script runs out.

    An int is the HTTP status to answer; "reset" closes the connection without answering;
    "slow" answers 200 only after `slow_seconds` (longer than our client waits).
    """

    def __init__(
        self,
        script: Sequence[Behaviour] = (),
        *,
        then: Behaviour = 200,
        slow_seconds: float = 2.0,
        port: int = 0,
    ) -> None:
        self.script = list(script)
        self.then = then
        self.slow_seconds = slow_seconds
        self.port = port
        self.hits: list[Hit] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/shapeshifter/api/v3/message"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        index = len(self.hits)
        behaviour = self.script[index] if index < len(self.script) else self.then
        self.hits.append(Hit(time.time(), body, behaviour))
        if behaviour == "reset":
            assert request.transport is not None
            request.transport.abort()  # no status line: the client sees the connection go
            return web.Response()
        if behaviour == "slow":
            await asyncio.sleep(self.slow_seconds)
            return web.Response(text="OK\n")
        assert isinstance(behaviour, int)
        reason = {200: "OK", 503: "temporarily unavailable", 404: "no back end yet"}
        return web.Response(status=behaviour, text=reason.get(behaviour, "refused") + "\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/shapeshifter/api/v3/message", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def peers() -> AsyncIterator[list[ScriptedPeer]]:
    """Scripted peers a test starts; stopped at the end."""
    started: list[ScriptedPeer] = []
    try:
        yield started
    finally:
        for peer in started:
            with contextlib.suppress(Exception):
                await peer.stop()


async def scripted(peers: list[ScriptedPeer], *args: object, **kwargs: object) -> ScriptedPeer:
    peer = ScriptedPeer(*args, **kwargs)  # type: ignore[arg-type]
    peers.append(peer)
    await peer.start()
    return peer


def peer_entry(url: str) -> Peer:
    return Peer(CRO, Role.CRO, url, (generate().public.signing,))


async def dso_for(
    network: Network, url: str, delivery: DeliverySettings, store_name: str | None = None
) -> Participant:
    dso = network.create(DSO, Role.DSO, delivery=delivery, store_name=store_name)
    await network.start(dso)
    assert isinstance(dso.directory, StaticDirectory)
    dso.directory.add(peer_entry(url))
    return dso


async def final_record(dso: Participant, message_id: str, timeout: float = 15.0) -> OutboundRecord:
    """The outbound record once its delivery has ended (delivered, failed or expired)."""
    found: list[OutboundRecord] = []

    async def ended() -> bool:
        record = await dso.store.get_outbound(message_id)
        if record is None or record.status is OutboundStatus.PENDING:
            return False
        found.append(record)
        return True

    await eventually(ended, timeout=timeout)
    return found[-1]


def gaps(attempts: Sequence[DeliveryAttempt]) -> list[float]:
    times = [attempt.attempted_at for attempt in attempts]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


async def test_503_outage_is_retried_with_growing_intervals_then_delivered(
    network: Network, peers: list[ScriptedPeer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapter.outbox")
    peer = await scripted(peers, [503, 503, 503, 503])
    dso = await dso_for(network, peer.url, SCHEDULE)

    sent = await dso.send(portfolio_update(0, 3), to=CRO)
    record = await final_record(dso, sent.message_id)

    assert record.status is OutboundStatus.DELIVERED
    assert record.attempts == 5
    attempts = await dso.store.attempts(sent.message_id)
    assert [(a.http_status, a.outcome) for a in attempts] == [(503, "temporary")] * 4 + [
        (200, "delivered")
    ]
    assert all("temporarily unavailable" in a.detail for a in attempts[:4])
    # The same signed bytes every time: a retry is not a new message.
    assert len(peer.hits) == 5 and len({hit.body for hit in peer.hits}) == 1
    # Each wait is within the schedule's bounds (initial * 2**(n-1), equal jitter), so the
    # waits grow: the n-th is at least the (n-1)-th's ceiling.
    waits = gaps(attempts)
    for n, wait in enumerate(waits, start=1):
        ceiling = min(SCHEDULE.backoff_max_seconds, SCHEDULE.backoff_initial_seconds * 2 ** (n - 1))
        assert ceiling / 2 - 0.005 <= wait <= ceiling + SLACK, (n, wait, ceiling)
    assert waits[-1] > 2 * waits[0]

    # The log tells the same story, attempt by attempt, with the time of the next attempt.
    pattern = re.compile(
        rf"outbox: DSOPortfolioUpdate {sent.message_id} -> {CRO} attempt (\d+): (.*); "
        r"(?:next attempt at (\S+)|(delivered))$"
    )
    lines = [
        (record.levelno, match)
        for record in caplog.records
        if (match := pattern.match(record.getMessage()))
    ]
    assert [int(match[1]) for _, match in lines] == [1, 2, 3, 4, 5]
    assert [level for level, _ in lines] == [logging.WARNING] * 4 + [logging.INFO]
    assert all(match[2] == "HTTP 503 temporarily unavailable" for _, match in lines[:4])
    assert lines[-1][1][4] == "delivered"
    for (_, match), attempt in zip(lines[:4], attempts[1:], strict=True):
        announced = datetime.fromisoformat(match[3])
        # Timers may fire up to the loop's clock resolution early.
        assert announced - timedelta(milliseconds=5) <= attempt.attempted_at
        assert attempt.attempted_at <= announced + timedelta(seconds=SLACK)


@pytest.mark.parametrize(
    ("trouble", "status", "detail"),
    [
        (404, 404, "no back end yet"),
        ("reset", None, "ServerDisconnectedError"),
        ("slow", None, "timed out"),
    ],
    ids=["404", "reset", "slower-than-timeout"],
)
async def test_temporary_trouble_is_retried_until_the_peer_recovers(
    network: Network,
    peers: list[ScriptedPeer],
    trouble: Behaviour,
    status: int | None,
    detail: str,
) -> None:
    peer = await scripted(peers, [trouble] * 3, slow_seconds=2 * QUICK.request_timeout_seconds)
    dso = await dso_for(network, peer.url, QUICK)

    sent = await dso.send(portfolio_update(0, 3), to=CRO)
    record = await final_record(dso, sent.message_id)

    assert record.status is OutboundStatus.DELIVERED and record.last_error is None
    attempts = await dso.store.attempts(sent.message_id)
    assert [(a.http_status, a.outcome) for a in attempts] == [(status, "temporary")] * 3 + [
        (200, "delivered")
    ]
    assert all(detail in a.detail for a in attempts[:3]), [a.detail for a in attempts]
    assert len(peer.hits) == 4
    if trouble == "slow":
        # Each slow attempt was given up after the client timeout, not waited out.
        for wait in gaps(attempts):
            assert wait >= QUICK.request_timeout_seconds - 0.01


async def test_a_peer_that_is_down_is_reached_once_it_listens(
    network: Network, peers: list[ScriptedPeer]
) -> None:
    port = free_port()
    dso = await dso_for(network, f"http://127.0.0.1:{port}/shapeshifter/api/v3/message", QUICK)

    sent = await dso.send(portfolio_update(0, 3), to=CRO)

    async def refused_a_few_times() -> bool:
        return len(await dso.store.attempts(sent.message_id)) >= 3

    await eventually(refused_a_few_times)
    peer = await scripted(peers, port=port)
    record = await final_record(dso, sent.message_id)

    assert record.status is OutboundStatus.DELIVERED
    attempts = await dso.store.attempts(sent.message_id)
    assert all(a.outcome == "temporary" and a.http_status is None for a in attempts[:-1])
    assert "Cannot connect" in attempts[0].detail or "refused" in attempts[0].detail.lower()
    assert (attempts[-1].http_status, attempts[-1].outcome) == (200, "delivered")
    assert len(peer.hits) == 1


@pytest.mark.parametrize("status", [400, 403])
async def test_permanent_refusal_ends_the_attempts_and_is_reported(
    network: Network, peers: list[ScriptedPeer], caplog: pytest.LogCaptureFixture, status: int
) -> None:
    peer = await scripted(peers, then=status)
    dso = await dso_for(network, peer.url, QUICK)

    with pytest.raises(DeliveryFailed) as failure:
        await dso.request(portfolio_update(0, 3), to=CRO, timeout=10)

    assert failure.value.status is OutboundStatus.FAILED
    assert failure.value.result.status == status
    assert f"HTTP {status}" in str(failure.value)
    record = await dso.store.get_outbound(failure.value.message_id)
    assert record is not None and record.status is OutboundStatus.FAILED
    assert record.next_attempt_at is None
    attempts = await dso.store.attempts(failure.value.message_id)
    assert [(a.http_status, a.outcome) for a in attempts] == [(status, "permanent")]
    assert any(
        r.levelno == logging.ERROR and "failed for good" in r.getMessage()
        for r in caplog.records
        if r.name == "adapter.participant"
    )
    # Nothing more is tried: many backoff periods later the peer has seen one request.
    await asyncio.sleep(10 * QUICK.backoff_max_seconds)
    assert len(peer.hits) == 1
    assert await dso.store.pending_outbound() == []


async def test_a_message_whose_deadline_passes_ends_expired(
    network: Network, peers: list[ScriptedPeer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapter.outbox")
    settings = DeliverySettings(
        deadline_seconds=0.8,
        request_timeout_seconds=0.3,
        backoff_initial_seconds=0.05,
        backoff_max_seconds=0.2,
    )
    peer = await scripted(peers, then=503)
    dso = await dso_for(network, peer.url, settings)

    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failure:
        await dso.request(portfolio_update(0, 3), to=CRO, timeout=10)
    elapsed = time.monotonic() - started

    assert failure.value.status is OutboundStatus.EXPIRED
    assert "could not be delivered in time" in str(failure.value)
    # It gave up when the next attempt would fall after the deadline, not long after.
    assert elapsed <= settings.deadline_seconds + SLACK
    record = await dso.store.get_outbound(failure.value.message_id)
    assert record is not None and record.status is OutboundStatus.EXPIRED
    assert record.next_attempt_at is None
    attempts = await dso.store.attempts(failure.value.message_id)
    assert len(attempts) >= 3
    assert all((a.http_status, a.outcome) == (503, "temporary") for a in attempts)
    # No attempt is scheduled past the deadline (a timer may fire a little late).
    assert attempts[-1].attempted_at <= record.deadline + timedelta(seconds=SLACK)
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name == "adapter.outbox" and failure.value.message_id in r.getMessage()
    ]
    assert len(logged) == len(attempts)
    assert all("; next attempt at " in line for line in logged[:-1])
    assert logged[-1].endswith(
        f"attempt {len(attempts)}: HTTP 503 temporarily unavailable; expired"
    )
    hits = len(peer.hits)
    await asyncio.sleep(2 * settings.backoff_max_seconds)
    assert len(peer.hits) == hits == len(attempts)


async def test_pending_delivery_resumes_after_a_restart(
    network: Network, peers: list[ScriptedPeer]
) -> None:
    peer = await scripted(peers, then=503)
    first = await dso_for(network, peer.url, QUICK, store_name="dso-restarted")
    sent = await first.send(portfolio_update(0, 3), to=CRO)

    async def tried_twice() -> bool:
        return len(await first.store.attempts(sent.message_id)) >= 2

    await eventually(tried_twice)
    await first.stop()
    before = len(peer.hits)
    peer.then = 200  # the peer recovers while we are down

    second = await dso_for(network, peer.url, QUICK, store_name="dso-restarted")
    record = await final_record(second, sent.message_id)

    assert record.status is OutboundStatus.DELIVERED
    attempts = await second.store.attempts(sent.message_id)
    assert record.attempts == len(attempts) == before + 1
    assert [a.outcome for a in attempts] == ["temporary"] * before + ["delivered"]
    assert len(peer.hits) == before + 1 and len({hit.body for hit in peer.hits}) == 1


async def test_stop_lets_a_post_on_the_wire_finish_and_records_it(
    network: Network, peers: list[ScriptedPeer]
) -> None:
    """A POST the peer already received is not cut off by a stop: its 200 is recorded, so
    the next start does not send the message again."""
    peer = await scripted(peers, ["slow"], slow_seconds=0.15)
    first = await dso_for(network, peer.url, QUICK, store_name="dso-stopped-mid-post")
    sent = await first.send(portfolio_update(0, 3), to=CRO)
    await eventually(lambda: len(peer.hits) == 1)
    await first.stop()

    second = await dso_for(network, peer.url, QUICK, store_name="dso-stopped-mid-post")
    record = await second.store.get_outbound(sent.message_id)
    assert record is not None and record.status is OutboundStatus.DELIVERED
    assert [a.outcome for a in await second.store.attempts(sent.message_id)] == ["delivered"]
    await asyncio.sleep(0.3)
    assert len(peer.hits) == 1


def test_backoff_bounds_are_the_documented_schedule() -> None:
    """The bounds the interval assertions above rely on: equal jitter within a doubling
    ceiling, capped."""
    import random

    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(1.6, 0.1 * 2 ** (attempt - 1))
        for _ in range(50):
            assert ceiling / 2 <= backoff_delay(attempt, 0.1, 1.6, rng) <= ceiling


async def test_a_deadline_that_passes_while_stopped_ends_expired_without_another_attempt(
    network: Network, peers: list[ScriptedPeer]
) -> None:
    settings = DeliverySettings(
        deadline_seconds=1.0,
        request_timeout_seconds=0.3,
        backoff_initial_seconds=0.05,
        backoff_max_seconds=0.1,
    )
    peer = await scripted(peers, then=503)
    first = await dso_for(network, peer.url, settings, store_name="dso-late")
    sent = await first.send(portfolio_update(0, 3), to=CRO)

    async def tried() -> bool:
        return len(await first.store.attempts(sent.message_id)) >= 1

    await eventually(tried)
    await first.stop()
    hits = len(peer.hits)
    peer.then = 200
    await asyncio.sleep(settings.deadline_seconds + 0.2)  # the deadline passes while down

    second = await dso_for(network, peer.url, settings, store_name="dso-late")
    record = await final_record(second, sent.message_id)

    assert record.status is OutboundStatus.EXPIRED, record
    assert len(peer.hits) == hits


async def test_a_withdrawn_message_is_never_attempted_again(
    network: Network, peers: list[ScriptedPeer]
) -> None:
    """A sender that gave up waiting withdraws its message: no more attempts, in this run or
    the next, and its record says so."""
    peer = await scripted(peers, then=503)
    first = await dso_for(network, peer.url, QUICK, store_name="dso-withdrawn")
    sent = await first.send(portfolio_update(0, 3), to=CRO)

    async def tried_twice() -> bool:
        return len(await first.store.attempts(sent.message_id)) >= 2

    await eventually(tried_twice)
    record = await first.withdraw(sent.message_id)

    assert record is not None and record.status is OutboundStatus.CANCELLED
    attempts = await first.store.attempts(sent.message_id)
    assert record.attempts == len(attempts) == len(peer.hits)
    peer.then = 200  # the peer recovers: nothing is sent to it any more
    await asyncio.sleep(5 * QUICK.backoff_max_seconds)
    assert len(peer.hits) == len(attempts)
    await first.stop()

    second = await dso_for(network, peer.url, QUICK, store_name="dso-withdrawn")
    await asyncio.sleep(5 * QUICK.backoff_max_seconds)
    assert len(peer.hits) == len(attempts)
    again = await second.store.get_outbound(sent.message_id)
    assert again is not None and again.status is OutboundStatus.CANCELLED
    assert await second.withdraw("unknown") is None


async def test_withdrawing_lets_the_post_on_the_wire_finish_and_tells_the_truth(
    network: Network, peers: list[ScriptedPeer]
) -> None:
    """The peer already has the message when the sender withdraws it: the record says
    delivered, not cancelled (the message will be acted on; the sender must know)."""
    peer = await scripted(peers, ["slow"], slow_seconds=0.15)  # within QUICK's timeout
    dso = await dso_for(network, peer.url, QUICK)
    sent = await dso.send(portfolio_update(0, 3), to=CRO)
    await eventually(lambda: len(peer.hits) == 1)

    record = await dso.withdraw(sent.message_id)

    assert record is not None and record.status is OutboundStatus.DELIVERED
    assert len(peer.hits) == 1
