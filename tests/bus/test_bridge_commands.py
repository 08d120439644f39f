"""Commands in, with the in-memory bus: a UFTP message from the operator's systems is filled
in, signed, stored with its command id and delivered; the same command twice sends one
message; an invalid command is dead-lettered with an error event that says why."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import datetime, timedelta

import pytest

from adapter.bus.bridge import _PLACEHOLDER_ID, _PLACEHOLDER_TIME
from adapter.bus.events import JSON_CONTENT_TYPE, XML_CONTENT_TYPE
from adapter.bus.memory import Binding, MemoryBus
from adapter.bus.port import Command, Verdict
from adapter.participant import Participant
from adapter.store.base import InboundStatus, OutboundRecord
from adapter.uftp.envelope import SIGNATURE_BYTES, parse_envelope
from adapter.uftp.messages import Role
from adapter.uftp.xml import parse_xml
from tests.bus.test_bridge_events import CRO, DSO, bridge, cro_with_bus
from tests.conftest import Network, eventually
from tests.test_participant import StoreCalls

CONVERSATION = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
QUERY_XML = (
    b'<DSOPortfolioQuery TimeZone="Europe/Amsterdam" Period="2024-01-02" '
    b'EntityAddress="ea1.2024-01.nl.example:cp1"/>'
)


def command(
    command_id: str | None = "cmd-1",
    data: bytes = QUERY_XML,
    *,
    content_type: str = XML_CONTENT_TYPE,
    **attributes: str,
) -> Command:
    fields = {"uftprecipient": CRO, "datacontenttype": content_type, **attributes}
    if command_id is not None:
        fields["id"] = command_id
    return Command(fields, data)


async def dso_and_cro(network: Network, bus: MemoryBus) -> tuple[Participant, Participant]:
    dso = network.create(DSO, Role.DSO, bus=bridge(bus))
    cro = await cro_with_bus(network, MemoryBus())
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: dso.bus is not None and dso.bus.health().consuming)
    return dso, cro


async def received_queries(cro: Participant) -> int:
    def count(conn: object) -> int:
        row = conn.execute(  # type: ignore[attr-defined]
            "SELECT count(*) FROM inbound WHERE message_type = 'DSOPortfolioQuery'"
        ).fetchone()
        return int(row[0])

    return await cro.store.read(count)  # type: ignore[attr-defined]


def by_route(binding: Binding, route: str) -> list[dict[str, str]]:
    return [
        {**event.extensions, "type": event.type, "data": event.data.decode()}
        for r, event in binding.events
        if r == route
    ]


async def test_a_command_becomes_a_delivered_message_its_outcome_and_its_response(
    network: Network,
) -> None:
    bus = MemoryBus()
    events = bus.bind("#")
    dso, cro = await dso_and_cro(network, bus)
    assert await bus.deliver(command(correlationid=CONVERSATION)) is Verdict.ACK
    # Acknowledged only once stored: the message is in the DSO's outbox already.
    assert await dso.store.command_message("cmd-1") is not None
    await eventually(lambda: len(by_route(events, "in.DSOPortfolioQueryResponse")) == 1)
    (outcome,) = by_route(events, "outcome.delivered")
    assert outcome["commandid"] == "cmd-1"
    assert outcome["correlationid"] == CONVERSATION  # the command's conversation is kept
    (response,) = by_route(events, "in.DSOPortfolioQueryResponse")
    assert response["commandid"] == "cmd-1"
    assert response["causationid"] == outcome["uftpmessageid"]
    assert await received_queries(cro) == 1
    # The query left out its TimeStamp and MessageID: the bridge's stand-ins for the schema
    # check never leave, the message sent has its own (a fresh id, the time it was made).
    record = await dso.store.get_outbound(outcome["uftpmessageid"])
    assert record is not None
    inner = parse_envelope(record.envelope).sealed[SIGNATURE_BYTES:]
    sent = parse_xml(inner)
    assert sent.get("MessageID") == record.message_id != _PLACEHOLDER_ID
    stamp = datetime.fromisoformat(sent.get("TimeStamp", ""))
    assert abs(stamp - record.created_at) < timedelta(seconds=1)
    assert sent.get("TimeStamp") != _PLACEHOLDER_TIME


async def test_the_same_command_twice_sends_one_message(network: Network) -> None:
    bus = MemoryBus()
    events = bus.bind("#")
    dso, cro = await dso_and_cro(network, bus)
    assert await bus.deliver(command()) is Verdict.ACK
    assert await bus.deliver(command()) is Verdict.ACK
    await eventually(lambda: len(by_route(events, "in.DSOPortfolioQueryResponse")) == 1)
    assert await received_queries(cro) == 1
    assert len(by_route(events, "outcome.delivered")) == 1


async def test_a_command_cut_off_after_its_commit_is_delivered_at_its_redelivery(
    network: Network,
) -> None:
    """The broker connection closes as the command's message is committed: the consumer is
    cancelled before the outbox is told, the broker delivers the command again, and that
    duplicate must set the stored message going (not leave it until its claim lapses)."""
    bus = MemoryBus()
    events = bus.bind("#")
    dso, cro = await dso_and_cro(network, bus)
    add_outbound = dso.store.add_outbound

    async def commit_then_cut_off(record: OutboundRecord) -> None:
        await add_outbound(record)
        raise asyncio.CancelledError  # as the consumer's task is when its channel closes

    dso.store.add_outbound = commit_then_cut_off  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await bus.deliver(command())
    dso.store.add_outbound = add_outbound  # type: ignore[method-assign]
    message_id = await dso.store.command_message("cmd-1")
    assert message_id is not None and not dso.outbox.knows(message_id)
    assert await bus.deliver(command()) is Verdict.ACK
    await eventually(lambda: len(by_route(events, "in.DSOPortfolioQueryResponse")) == 1, timeout=5)
    assert await received_queries(cro) == 1


async def test_a_command_in_json_with_its_id_as_message_id(network: Network) -> None:
    bus = MemoryBus()
    events = bus.bind("#")
    dso, cro = await dso_and_cro(network, bus)
    # Only the business content: the adapter fills the metadata, as for XML.
    body = json.dumps(
        {
            "DSOPortfolioQuery": {
                "TimeZone": "Europe/Amsterdam",
                "Period": "2024-01-02",
                "EntityAddress": "ea1.2024-01.nl.example:cp1",
            }
        }
    ).encode()
    cmd = Command(
        {"uftprecipient": CRO, "datacontenttype": JSON_CONTENT_TYPE}, body, message_id="amqp-1"
    )
    assert await bus.deliver(cmd) is Verdict.ACK
    await eventually(lambda: len(by_route(events, "in.DSOPortfolioQueryResponse")) == 1)
    assert await dso.store.command_message("amqp-1") is not None


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (command(None), "no id"),
        (command(uftprecipient="nobody.example.com"), "no peer nobody.example.com"),
        (command(data=b"<WeatherReport/>"), "not a UFTP message type"),
        (command(data=b'<DSOPortfolioQuery TimeZone="Mars/Olympus"/>'), "not a valid"),
        (command(data=b"<unclosed"), "well-formed"),
        (command(type="uftp.AGRPortfolioQuery"), "does not match"),
        (command(content_type="application/pdf"), "content type"),
        (command(uftprecipientrole="KING"), "not a UFTP role"),
        (Command({"id": "c", "datacontenttype": XML_CONTENT_TYPE}, QUERY_XML), "no recipient"),
        # What the transport could not read: its body not kept, or no properties (no id).
        (
            Command(command().attributes, b"", malformed="the body exceeds 64 bytes"),
            "the body exceeds 64 bytes",
        ),
        (Command({}, QUERY_XML, malformed="undecodable properties (x)"), "undecodable"),
    ],
)
async def test_an_invalid_command_is_dead_lettered_with_an_error_event(
    network: Network, bad: Command, reason: str
) -> None:
    bus = MemoryBus()
    errors = bus.bind("error.*")
    bus.bind("#")
    dso, _ = await dso_and_cro(network, bus)
    assert await bus.deliver(bad) is Verdict.REJECT
    assert bus.dead_letters == [bad]
    await eventually(lambda: len(errors.events) == 1)
    route, error = errors.events[0]
    assert route == "error.command" and error.type == "uftp.error.command"
    body = json.loads(error.data)
    assert reason in body["reason"], body
    assert body["commandId"] == bad.id
    assert await dso.store.pending_outbound() == []


async def test_after_a_restart_the_outcome_still_names_its_command(network: Network) -> None:
    with socket.socket() as probe:  # the CRO's port, nobody listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cro = network.create(CRO, Role.CRO, port=port)
    first = network.create(DSO, Role.DSO, bus=bridge(MemoryBus()), store_name="dso")
    await network.start(first)
    network.introduce(cro, first)
    assert first.bus is not None
    await eventually(lambda: first.bus is not None and first.bus.health().consuming)
    assert await first.bus.bus.deliver(command("cmd-r")) is Verdict.ACK  # type: ignore[attr-defined]
    await eventually(lambda: first.store.pending_outbound())  # refused: waits, pending
    await first.stop()

    bus = MemoryBus()
    events = bus.bind("#")
    second = network.create(DSO, Role.DSO, bus=bridge(bus), store_name="dso")
    await network.start(second, cro)  # the CRO is up now
    network.introduce(cro, second)
    await eventually(lambda: len(by_route(events, "outcome.delivered")) == 1, timeout=15)
    (outcome,) = by_route(events, "outcome.delivered")
    assert outcome["commandid"] == "cmd-r"


async def test_a_commands_response_is_stored_handled_at_once_its_event_all_its_handling(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a response to a command's message asks of its handling is its event, written in
    the transaction that stores it: nothing is left for a crash to lose, so it is stored
    handled, with no second statement to finish it (one write less a command)."""
    bus = MemoryBus()
    events = bus.bind("#")
    dso, _ = await dso_and_cro(network, bus)
    calls = StoreCalls(dso, monkeypatch)

    assert await bus.deliver(command(correlationid=CONVERSATION)) is Verdict.ACK

    await eventually(lambda: len(by_route(events, "in.DSOPortfolioQueryResponse")) == 1)
    assert calls.saved == {"DSOPortfolioQueryResponse": InboundStatus.HANDLED}
    await eventually(lambda: calls.observer.ended == [("DSOPortfolioQueryResponse", "ok")])
    assert calls.finished == []
    assert await dso.store.unfinished_inbound() == []
    (response,) = by_route(events, "in.DSOPortfolioQueryResponse")
    assert response["commandid"] == "cmd-1"
