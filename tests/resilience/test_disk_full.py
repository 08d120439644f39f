"""The disk under the CRO's store fills up after it answered a valid update with HTTP 200.

A full disk is our fault, never the sender's: the message is not rejected, nothing is answered
while the disk stays full, the handling is tried again with backoff while the process runs,
and once space returns the sender gets its Accepted response, with no restart. A copy the
sender posts meanwhile is "Already Submitted" and lost for nothing: the retry answers it.

The store lives on a small tmpfs the test mounts (tests/resilience/disk.py); the disk fills at
the moment the message is being handled, which the test stages by wrapping the handler.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from adapter.config import CroSettings
from adapter.cro import cro_router
from adapter.directory import StaticDirectory
from adapter.participant import Participant
from adapter.router import Handler, HandlerContext, Router
from adapter.store import register_for
from adapter.testing import Network, eventually
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
)
from tests.resilience.disk import SmallDisk
from tests.resilience.dso_driver import portfolio_update
from tests.resilience.stores import open_read_only

CRO = "cro.disk.test"
DSO = "dso.disk.test"

Stage = Callable[[], None]


def staged(handler: Handler, *, before: Stage | None = None, after: Stage | None = None) -> Router:
    """A router whose DSOPortfolioUpdate handler is `handler`, with `before` run as the second
    message starts being handled and `after` as it has been (the first message warms up)."""
    router = Router()
    calls = 0

    @router.on(DSOPortfolioUpdate)
    async def update(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse | None:
        nonlocal calls
        calls += 1
        if calls == 2 and before is not None:
            before()
        response = await handler(message, ctx)
        if calls == 2 and after is not None:
            after()
        return response

    return router


async def accept(message: Any, ctx: HandlerContext) -> PayloadResponse:
    return DSOPortfolioUpdateResponse()


async def cro_on(network: Network, router_of: Callable[[Participant], Router]) -> Participant:
    """A CRO whose store is on the small disk (tmp_path/disk, see the `disk` fixture)."""
    cro = network.create(CRO, Role.CRO, store_name="disk/cro")
    cro.router.include(router_of(cro))
    return cro


def register_router(cro: Participant, **stages: Stage) -> Router:
    """The CRO's own register handler, staged."""
    handler = cro_router(register_for(cro.store), CroSettings()).handler_for(DSOPortfolioUpdate)
    assert handler is not None
    return staged(handler, **stages)


def responses_queued(cro: Participant, reference: str) -> list[str]:
    """The CRO's responses to `reference` (read from its store file, as an operator would)."""
    conn = open_read_only(cro.store.path)  # type: ignore[attr-defined]
    try:
        rows = conn.execute(
            "SELECT message_id FROM outbound WHERE reference_message_id = ?", (reference,)
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [row[0] for row in rows]


def faults_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "adapter.participant" and "failed for a fault of ours" in r.getMessage()
    ]


async def last_sent(dso: Participant) -> str:
    """The MessageID of the DSO's latest DSOPortfolioUpdate (its outbox in its store)."""
    conn = open_read_only(dso.store.path)  # type: ignore[attr-defined]
    try:
        (message_id,) = conn.execute(
            "SELECT message_id FROM outbound WHERE message_type = 'DSOPortfolioUpdate' "
            "ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return str(message_id)


class LoopErrors:
    """What reaches the event loop's exception handler ("Task exception was never retrieved")."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: self.contexts.append(context)
        )

    def check(self) -> None:
        gc.collect()  # an unretrieved task exception is reported when the task is collected
        assert self.contexts == []


async def survive_the_full_disk(
    disk: SmallDisk,
    network: Network,
    caplog: pytest.LogCaptureFixture,
    cro: Participant,
) -> DSOPortfolioUpdateResponse:
    """Publish while the disk fills, check that nothing is answered meanwhile, free the disk:
    the response that then arrives (with no restart)."""
    caplog.set_level(logging.INFO)
    errors = LoopErrors()
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    warm_up = await dso.request(portfolio_update(0, 5), to=CRO, timeout=10)
    assert warm_up.result is Result.ACCEPTED

    request = asyncio.create_task(dso.request(portfolio_update(1, 200), to=CRO, timeout=60))
    await eventually(lambda: len(faults_logged(caplog)) >= 3)  # tried again, and again
    assert disk.free_bytes() == 0
    sent = await last_sent(dso)
    assert not request.done()
    assert responses_queued(cro, sent) == []  # no rejection, no response of any kind

    # The sender posts its copy again: "Already Submitted" (HTTP 200), and still no answer.
    record = await dso.store.get_outbound(sent)
    assert record is not None
    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        async with session.post(cro.url(), data=record.envelope, headers=headers) as answer:
            assert answer.status == 200
    faults = len(faults_logged(caplog))
    await eventually(lambda: len(faults_logged(caplog)) > faults)
    assert not request.done()

    disk.free()
    response = await asyncio.wait_for(request, timeout=15)

    assert isinstance(response, DSOPortfolioUpdateResponse)
    assert responses_queued(cro, sent) == [response.message_id]  # answered once
    assert all(r.levelno == logging.ERROR for r in faults_logged(caplog))
    assert not [r for r in caplog.records if "Invalid Message" in r.getMessage()]
    unfinished = await cro.store.unfinished_inbound()
    assert [r.message_id for r in unfinished] == []
    errors.check()
    return response


async def test_a_register_write_on_a_full_disk_is_retried_until_space_returns(
    disk: SmallDisk, network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    cro = await cro_on(network, lambda cro: register_router(cro, before=disk.fill))

    response = await survive_the_full_disk(disk, network, caplog, cro)

    assert response.result is Result.ACCEPTED, response.rejection_reason
    points = await register_for(cro.store).congestion_points()
    assert {p.entity_address for p in points} == {
        "ea1.2024-01.nl.example:cp-0",
        "ea1.2024-01.nl.example:cp-1",
    }
    # The register write itself is what failed (the update was not applied twice).
    assert any("database or disk is full" in r.getMessage() for r in faults_logged(caplog))


async def test_a_finish_on_a_full_disk_is_retried_until_space_returns(
    disk: SmallDisk, network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    """The handler succeeded; marking the message handled and queueing its response is what
    the full disk refuses."""
    cro = await cro_on(network, lambda cro: staged(accept, after=disk.fill))

    response = await survive_the_full_disk(disk, network, caplog, cro)

    assert response.result is Result.ACCEPTED


async def test_a_handler_that_fails_for_our_own_io_is_not_the_senders_fault(
    network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler's own I/O failing (OSError: a disk, a service it calls) is retried like the
    store's faults, not answered "Invalid Message"."""
    caplog.set_level(logging.INFO)
    failures = 0

    async def flaky(message: Any, ctx: HandlerContext) -> PayloadResponse:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise OSError(28, "No space left on device")
        return DSOPortfolioUpdateResponse()

    cro = network.create(CRO, Role.CRO, router=staged(flaky))
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)

    response = await dso.request(portfolio_update(0, 5), to=CRO, timeout=10)

    assert response.result is Result.ACCEPTED, response.rejection_reason
    assert failures == 2 and len(faults_logged(caplog)) == 2


async def test_stop_ends_the_retries_and_the_next_start_handles_the_message(
    disk: SmallDisk, network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = await cro_on(network, lambda cro: staged(accept, after=disk.fill))
    dso = network.create(DSO, Role.DSO)
    await network.start(first, dso)
    network.introduce(first, dso)
    assert (await dso.request(portfolio_update(0, 5), to=CRO, timeout=10)).accepted
    request = asyncio.create_task(dso.request(portfolio_update(1, 50), to=CRO, timeout=60))
    await eventually(lambda: len(faults_logged(caplog)) >= 1)

    await asyncio.wait_for(first.stop(), timeout=10)  # no retry keeps it waiting
    disk.free()
    second = network.create(CRO, Role.CRO, store_name="disk/cro", port=first.port)
    second.router.include(staged(accept))
    assert isinstance(second.directory, StaticDirectory)
    second.directory.add(network.peer(dso))  # before it starts: it recovers the message then
    await network.start(second)

    response = await asyncio.wait_for(request, timeout=15)
    assert response.result is Result.ACCEPTED
