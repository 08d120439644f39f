"""The bridge end to end on each real broker, RabbitMQ and NATS JetStream, configured as a
[bus] table configures it, with shapeshifter-uftp as the UFTP peer where one is needed:
events out, commands in (once each, however often the broker delivers them), poison
commands dead-lettered with a reason, and requests answered by the operator's systems."""

# ruff: noqa: F811 - the interop fixtures are imported by name

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

pytest.importorskip("shapeshifter_uftp")

from adapter.bus.bridge import BusBridge
from adapter.bus.nats import NatsBus
from adapter.bus.rabbitmq import RabbitBus
from adapter.store.base import InboundStatus
from adapter.uftp import codec
from adapter.uftp.messages import DSOPortfolioQueryResponse, Role
from tests.bus.brokers import BrokerSide, bridge
from tests.bus.test_bridge_events import CRO, DSO
from tests.bus.test_bus_answers import QUERY
from tests.conftest import Network, eventually
from tests.interop.conftest import TheirSide, shapeshifter  # noqa: F401
from tests.interop.test_shapeshifter_cro import connection, dso_update, point, send_dso_update
from tests.uftp.samples import make_dso_portfolio_query_response

UPDATE_XML = (
    b'<DSOPortfolioUpdate TimeZone="Europe/Amsterdam">'
    b'<CongestionPoint EntityAddress="ea1.2024-01.nl.example:cp7" StartPeriod="2024-01-01" '
    b'MutexOffersSupported="true" DayAheadRedispatchBy="DSO">'
    b'<Connection EntityAddress="ean.000000000000000007" StartPeriod="2024-01-01"/>'
    b"</CongestionPoint></DSOPortfolioUpdate>"
)


def cro_on(network: Network, bus_broker: BrokerSide, **options: object) -> BusBridge:
    """Our CRO with the register, on `bus_broker`; its bridge."""
    from adapter.config import CroSettings
    from adapter.cro import cro_router
    from adapter.store import register_for

    cro_bridge = bridge(bus_broker, **options)  # type: ignore[arg-type]
    cro = network.create(CRO, Role.CRO, bus=cro_bridge)
    assert cro.journal is not None
    register = register_for(cro.store, events=cro.journal.register_change)
    cro.router.include(cro_router(register, CroSettings()))
    return cro_bridge


def test_the_url_picks_the_adapter(bus_broker: BrokerSide) -> None:
    expected = RabbitBus if bus_broker.kind == "rabbitmq" else NatsBus
    assert isinstance(bridge(bus_broker).bus, expected)


async def test_their_dso_updates_reach_the_bus_with_the_register_changes(
    network: Network, shapeshifter: TheirSide, bus_broker: BrokerSide
) -> None:
    sink = await bus_broker.sink()
    cro_on(network, bus_broker)
    (cro,) = network.participants
    await network.start(cro)
    their_dso = shapeshifter.dso(DSO)
    shapeshifter.introduce(cro, their_dso)
    for n in range(3):
        update_n = dso_update(point(f"ea1.2024-01.nl.example:cp{n}", connection(f"ean.{n:018d}")))
        response = await send_dso_update(shapeshifter, their_dso, cro, update_n)
        assert str(response.result) in ("Accepted", "AcceptedRejected.ACCEPTED")
    await eventually(lambda: len(sink.events) == 9, timeout=15)
    assert sorted(set(sink.routes())) == [
        "in.DSOPortfolioUpdate",
        "outcome.delivered",
        "register.dso-portfolio",
    ]
    inbound = sink.of("in.DSOPortfolioUpdate")
    assert len(inbound) == 3 and all(e.source == f"urn:uftp:DSO:{DSO}" for e in inbound)
    assert all(e.type == "uftp.DSOPortfolioUpdate" for e in inbound)
    assert all(e.extensions["uftprecipient"] == CRO for e in inbound)
    assert all(e.data.startswith(b"<") and b"cp" in e.data for e in inbound)
    assert len(sink.of("register.dso-portfolio")) == 3
    outcomes = sink.of("outcome.delivered")
    assert {o.extensions["causationid"] for o in outcomes} == {
        e.extensions["uftpmessageid"] for e in inbound
    }
    assert sink.duplicates == 0

    async def all_marked() -> bool:
        return await cro.store.unpublished_events(1) == []

    await eventually(all_marked)


async def test_a_command_published_twice_goes_to_their_cro_once(
    network: Network, shapeshifter: TheirSide, bus_broker: BrokerSide
) -> None:
    sink = await bus_broker.sink()
    dso = network.create(DSO, Role.DSO, bus=bridge(bus_broker))
    await network.start(dso)
    their_cro = shapeshifter.cro(CRO)
    shapeshifter.introduce(dso, their_cro)
    await eventually(lambda: dso.bus is not None and dso.bus.health().consuming, timeout=15)

    # The same command twice, as two messages to the broker (a producer that retried after
    # a lost confirm, beyond any de-duplication of the broker's): one UFTP message.
    for attempt in range(2):
        await bus_broker.send_command(
            "cmd-e2e-1", UPDATE_XML, transport_id=f"publication-{attempt}", uftprecipient=CRO
        )
    received = await their_cro.next()
    assert received.congestion_points[0].entity_address == "ea1.2024-01.nl.example:cp7"
    # Both: their CRO's response may reach us before our delivery's outcome is written (the
    # outcome then follows the response on the bus).
    await eventually(
        lambda: (
            len(sink.of("in.DSOPortfolioUpdateResponse")) == 1
            and len(sink.of("outcome.delivered")) == 1
        ),
        timeout=15,
    )
    (outcome,) = sink.of("outcome.delivered")
    (response,) = sink.of("in.DSOPortfolioUpdateResponse")
    assert outcome.extensions["commandid"] == response.extensions["commandid"] == "cmd-e2e-1"
    assert response.extensions["causationid"] == outcome.extensions["uftpmessageid"]
    assert response.source == f"urn:uftp:CRO:{CRO}"
    await asyncio.sleep(0.5)
    assert their_cro.empty()  # nothing sent twice
    assert await dso.store.command_message("cmd-e2e-1") is not None
    assert await bus_broker.dead_letters() == []


async def test_a_poison_command_is_dead_lettered_with_an_error_event(
    network: Network, bus_broker: BrokerSide
) -> None:
    sink = await bus_broker.sink("error.*")
    dso = network.create(DSO, Role.DSO, bus=bridge(bus_broker))
    await network.start(dso)
    await eventually(lambda: dso.bus is not None and dso.bus.health().consuming, timeout=15)
    await bus_broker.send_command("poison-1", b"<DSOPortfolioUpdate Bogus='1'/>", uftprecipient=CRO)
    dead: list[str] = []

    async def dead_lettered() -> bool:
        dead.extend(await bus_broker.dead_letters())
        return bool(dead)

    await eventually(dead_lettered, timeout=15)
    assert dead == ["poison-1"]
    await eventually(lambda: len(sink.events) == 1)
    (error,) = sink.of("error.command")
    assert error.extensions["commandid"] == "poison-1"
    assert "not a valid UFTP message" in json.loads(error.data)["reason"]
    assert await dso.store.pending_outbound() == []


async def test_a_request_listed_in_handlers_bus_is_answered_by_a_command(
    network: Network, bus_broker: BrokerSide
) -> None:
    requests = await bus_broker.sink("in.DSOPortfolioQuery")
    outcomes = await bus_broker.sink("outcome.*")
    cro_bridge = cro_on(network, bus_broker, answered=("DSOPortfolioQuery",))
    assert cro_bridge.answered == {"DSOPortfolioQuery"}
    (cro,) = network.participants
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: cro_bridge.health().consuming, timeout=15)

    pending = asyncio.ensure_future(dso.request(QUERY, to=CRO, timeout=20))
    await eventually(lambda: len(requests.events) == 1, timeout=15)
    (request,) = requests.of("in.DSOPortfolioQuery")
    request_id = request.extensions["uftpmessageid"]
    stored = await cro.store.get_inbound(DSO, request_id)
    assert stored is not None and stored.status is InboundStatus.RECEIVED  # nobody answered

    # The operator's system answers: a complete response, naming the request.
    answer_id = f"answer-{uuid.uuid4().hex[:8]}"
    body = codec.encode(make_dso_portfolio_query_response())
    await bus_broker.send_command(answer_id, body, uftprecipient=DSO, causationid=request_id)
    response = await pending
    assert isinstance(response, DSOPortfolioQueryResponse)
    assert response.reference_message_id == request_id
    assert response.conversation_id == request.extensions["correlationid"]
    await eventually(lambda: len(outcomes.events) == 1, timeout=15)
    (outcome,) = outcomes.of("outcome.delivered")
    assert outcome.extensions["commandid"] == answer_id
    assert outcome.extensions["causationid"] == request_id
    stored = await cro.store.get_inbound(DSO, request_id)
    assert stored is not None and stored.status is InboundStatus.HANDLED
