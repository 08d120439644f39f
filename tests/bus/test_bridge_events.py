"""Events out, end to end on loopback with the in-memory bus: what a UFTP exchange puts on
the bus, written with the state it reports and relayed once the bus takes it. Broker
outages cost the UFTP side nothing."""

from __future__ import annotations

import json
from datetime import date

import aiohttp
from aiohttp import web

from adapter.bus.bridge import BusBridge
from adapter.bus.events import JSON_CONTENT_TYPE, XML_CONTENT_TYPE, message_from_json
from adapter.bus.journal import EventFormat
from adapter.bus.memory import Binding, MemoryBus
from adapter.config import CroSettings
from adapter.cro import cro_router
from adapter.participant import Participant
from adapter.store import register_for
from adapter.store.base import InboundStatus
from adapter.uftp import codec, envelope
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
    Result,
    Role,
    TestMessage,
)
from tests.conftest import Network, eventually

CRO, DSO = "cro.example.com", "dso.example.com"
CP = "ea1.2024-01.nl.example:cp1"


def update(n: int = 1) -> DSOPortfolioUpdate:
    return DSOPortfolioUpdate(
        time_zone="Europe/Amsterdam",
        congestion_points=(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=CP,
                start_period=date(2024, 1, 1),
                mutex_offers_supported=True,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                connections=tuple(
                    DSOPortfolioUpdateConnection(f"ean.{i:018d}", date(2024, 1, 1))
                    for i in range(1, n + 1)
                ),
            ),
        ),
    )


def bridge(bus: MemoryBus, **options: object) -> BusBridge:
    return BusBridge(bus, relay_poll_seconds=0.05, relay_backoff_max_seconds=0.3, **options)  # type: ignore[arg-type]


async def cro_with_bus(network: Network, bus: MemoryBus, **options: object) -> Participant:
    cro = network.create(CRO, Role.CRO, bus=bridge(bus, **options))
    assert cro.journal is not None
    register = register_for(cro.store, events=cro.journal.register_change)
    cro.router.include(cro_router(register, CroSettings()))
    return cro


def routes(binding: Binding) -> list[str]:
    return [route for route, _ in binding.events]


async def test_a_portfolio_update_makes_its_event_its_register_change_and_its_outcome(
    network: Network,
) -> None:
    bus = MemoryBus()
    queue = bus.bind("#")
    cro = await cro_with_bus(network, bus)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)

    response = await dso.request(update(3), to=CRO, timeout=10)
    assert response.result is Result.ACCEPTED
    await eventually(lambda: len(queue.events) == 3)
    assert routes(queue) == ["in.DSOPortfolioUpdate", "register.dso-portfolio", "outcome.delivered"]

    (_, inbound), (_, change), (_, outcome) = queue.events
    stored = await cro.store.get_inbound(DSO, inbound.extensions["uftpmessageid"])
    assert stored is not None
    signed = envelope.parse_envelope(stored.envelope).sealed[envelope.SIGNATURE_BYTES :]
    assert inbound.data == signed  # the inner XML exactly as the DSO signed it
    assert inbound.datacontenttype == XML_CONTENT_TYPE
    assert inbound.type == "uftp.DSOPortfolioUpdate"
    assert inbound.source == f"urn:uftp:DSO:{DSO}"
    assert inbound.extensions["correlationid"] == response.conversation_id
    assert inbound.extensions["uftpsender"] == DSO
    assert inbound.extensions["uftpsenderrole"] == "DSO"
    assert inbound.extensions["uftprecipient"] == CRO
    assert inbound.extensions["uftprecipientrole"] == "CRO"
    assert inbound.extensions["uftpversion"] == "3.1.0"

    assert json.loads(change.data)["congestionPoints"] == [
        {"entityAddress": CP, "startPeriod": "2024-01-01", "endPeriod": None, "connections": 3}
    ]
    assert change.extensions["causationid"] == inbound.extensions["uftpmessageid"]
    # Of the update's conversation, so that the relay keeps it between the update and the
    # response's outcome (it orders each conversation's events, not events across them).
    assert change.extensions["correlationid"] == response.conversation_id

    assert outcome.type == "uftp.outcome.delivered"
    assert outcome.extensions["uftpmessageid"] == response.message_id
    assert outcome.extensions["causationid"] == response.reference_message_id
    assert json.loads(outcome.data)["status"] == "delivered"
    assert len({event.id for _, event in queue.events}) == 3


async def test_the_response_on_the_requesting_side_names_its_request(network: Network) -> None:
    bus = MemoryBus()
    queue = bus.bind("#")
    cro = network.create(CRO, Role.CRO)
    dso = network.create(DSO, Role.DSO, bus=bridge(bus))
    await network.start(cro, dso)
    network.introduce(cro, dso)
    request = TestMessage()
    response = await dso.request(request, to=CRO, role=Role.CRO, timeout=10)
    await eventually(lambda: len(queue.events) == 2)
    assert routes(queue) == ["outcome.delivered", "in.TestMessageResponse"]
    outcome = queue.events[0][1]
    assert outcome.extensions["uftprecipient"] == CRO
    assert queue.events[1][1].extensions["uftpmessageid"] == response.message_id


async def test_a_broker_outage_is_no_peers_business_and_the_relay_catches_up(
    network: Network,
) -> None:
    bus = MemoryBus()
    queue = bus.bind("in.#")
    bus.bind("#")  # everything else routes too
    bus.available = False
    cro = await cro_with_bus(network, bus)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    for n in range(1, 6):
        response = await dso.request(update(n), to=CRO, timeout=10)
        assert response.result is Result.ACCEPTED  # HTTP 200 and an answer, bus or no bus
    assert queue.events == []

    async def all_stored() -> bool:  # the last outcome is recorded just after the DSO's answer
        return len(await cro.store.unpublished_events(100)) == 15

    await eventually(all_stored)
    health = cro.bus.health() if cro.bus else None
    assert health is not None and not health.connected

    bus.available = True
    await eventually(lambda: len(queue.events) == 5, timeout=15)
    sent = [
        await cro.store.get_inbound(DSO, e.extensions["uftpmessageid"]) for _, e in queue.events
    ]
    assert [r.received_at for r in sent if r] == sorted(r.received_at for r in sent if r)
    await eventually(lambda: len(bus.published) == 15)

    async def all_marked() -> bool:  # marks are written in batches, a moment later
        return await cro.store.unpublished_events(100) == []

    await eventually(all_marked)
    assert len(bus.published) == 15  # and nothing was published twice meanwhile


async def test_rejected_and_repeated_messages_make_no_event(network: Network) -> None:
    bus = MemoryBus()
    queue = bus.bind("in.#")
    bus.bind("#")
    cro = await cro_with_bus(network, bus)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    # A DSO may not send an AGRPortfolioQuery: a protocol rejection, not a handled message.
    from adapter.uftp.messages import AGRPortfolioQuery

    query = await dso.send(
        AGRPortfolioQuery(time_zone="Europe/Amsterdam", period=date(2024, 1, 2)),
        to=CRO,
        role=Role.CRO,
    )

    async def answered() -> bool:  # the CRO stored the query and rejected it
        record = await cro.store.get_inbound(DSO, query.message_id)
        return record is not None and record.status is InboundStatus.HANDLED

    await eventually(answered)
    sent = await dso.send(update(), to=CRO)
    await eventually(lambda: len(queue.events) == 1)
    record = await dso.store.get_outbound(sent.message_id)
    assert record is not None
    async with (
        aiohttp.ClientSession() as session,  # the same message again, as a retry would
        session.post(
            cro.url(), data=record.envelope, headers={"Content-Type": "text/xml"}
        ) as reply,
    ):
        assert reply.status == 200
    await eventually(lambda: len(bus.published) >= 4)  # the update's register change, outcomes
    assert routes(queue) == ["in.DSOPortfolioUpdate"]


async def test_a_failed_delivery_is_an_outcome_with_its_reason(network: Network) -> None:
    bus = MemoryBus()
    queue = bus.bind("outcome.*")
    app = web.Application()

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=403, text="go away")

    app.router.add_post("/shapeshifter/api/v3/message", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        dso = network.create(DSO, Role.DSO, bus=bridge(bus))
        cro = network.create(CRO, Role.CRO)
        await network.start(dso)
        network.keys.setdefault(CRO, network.keys[DSO])
        from adapter.directory import StaticDirectory

        assert isinstance(dso.directory, StaticDirectory)
        dso.directory.add(
            network.peer(cro, endpoint=f"http://127.0.0.1:{port}/shapeshifter/api/v3/message")
        )
        sent = await dso.send(update(), to=CRO)
        await eventually(lambda: len(queue.events) == 1)
        route, outcome = queue.events[0]
        assert route == "outcome.failed"
        body = json.loads(outcome.data)
        assert body["messageId"] == sent.message_id and "403" in body["detail"]
    finally:
        await runner.cleanup()


async def test_the_json_format_renders_the_message_as_json_that_round_trips(
    network: Network,
) -> None:
    bus = MemoryBus()
    queue = bus.bind("in.#")
    cro = await cro_with_bus(network, bus, format=EventFormat.JSON)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    sent = await dso.send(update(2), to=CRO)
    await eventually(lambda: len(queue.events) == 1)
    event = queue.events[0][1]
    assert event.datacontenttype == JSON_CONTENT_TYPE
    assert message_from_json(event.data) == codec.decode(codec.encode(sent))


async def test_an_unroutable_event_waits_and_says_so(network: Network) -> None:
    bus = MemoryBus()
    cro = await cro_with_bus(network, bus)
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await dso.request(update(), to=CRO, timeout=10)
    assert cro.bus is not None
    await eventually(lambda: "no route" in cro.bus.health().detail)  # type: ignore[union-attr]
    queue = bus.bind("#")
    await eventually(lambda: len(queue.events) == 3, timeout=15)
