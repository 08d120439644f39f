"""The NATS JetStream adapter keeps the bus port's contract, against a real nats-server.

The shared server is UFTP_TEST_NATS_URL (default nats://127.0.0.1:4222); each test declares
streams, subjects and a consumer of its own and deletes the streams afterwards. Without a
server the tests skip, unless CI or UFTP_TEST_NATS_URL is set: then an unreachable server
is a failure, so CI cannot pass by silently skipping them. The restart tests run a
nats-server of their own on a free port and never touch the shared one.

`broker` is the broker side a test drives (send a command, read events and dead letters);
the tests use nothing else of NATS, so a RabbitMQ broker with the same methods could run
them as a contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import nats.protocol.parser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DiscardPolicy, RawStreamMsg, StreamConfig

import adapter.bus.nats
from adapter.bus.events import XML_CONTENT_TYPE, CloudEvent, from_nats, source_urn
from adapter.bus.nats import (
    DEAD_DELIVERIES,
    DEAD_REASON,
    DEAD_SUBJECT,
    MSG_ID,
    NatsBus,
    RawClient,
    _ack_metadata,
    _event_block,
    _event_headers,
    _parse_header_lines,
    _parse_headers,
    _send,
    _status,
    open_connection,
)
from adapter.bus.nats_intake import SocketIntake
from adapter.bus.port import BusUnavailable, Command, Unroutable, Verdict
from tests.bus.conftest import NATS_REQUIRED, NATS_URL, reachable
from tests.bus.tools import Recorder
from tests.test_readme import python_examples

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
#: Generous: the machine is shared, and a reconnection takes a second or two by design.
PATIENCE = 20.0


def event(event_id: str = "ev-1", **extensions: str) -> CloudEvent:
    return CloudEvent(
        id=event_id,
        source=source_urn("DSO", "dso.example.com"),
        type="uftp.DSOPortfolioUpdate",
        time=datetime(2024, 5, 1, 8, 15, 30, 250000, tzinfo=UTC),
        datacontenttype=XML_CONTENT_TYPE,
        data='<DSOPortfolioUpdate Note="é"/>'.encode(),
        extensions={
            "uftpversion": "3.0.0",
            "correlationid": "conv-1",
            "causationid": "msg-0",
            "uftpmessageid": "msg-1",
            "uftpsender": "dso.example.com",
            "uftpsenderrole": "DSO",
            "uftprecipient": "cro.example.com",
            "uftprecipientrole": "CRO",
            **extensions,
        },
    )


def command_headers(command_id: str, **more: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": command_id,
        "ce-source": "urn:test:planner",
        "ce-type": "uftp.command.send",
        "ce-time": "2024-05-01T08:00:00Z",
        "ce-datacontenttype": "text/xml;%20charset=utf-8",
        "ce-uftprecipient": "cro.example.com",
        **more,
    }


async def eventually(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str
) -> None:
    deadline = time.monotonic() + PATIENCE
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NatsBroker:
    """The broker side of a test: names of its own, a plain client, cleanup."""

    def __init__(self, url: str, client: Client) -> None:
        token = uuid.uuid4().hex[:10]
        self.url = url
        self.names: dict[str, Any] = {
            "stream": f"T{token}_UFTP",
            "events_subject": f"t{token}.events",
            "commands_stream": f"T{token}_COMMANDS",
            "commands_subject": f"t{token}.commands",
            "dead_stream": f"T{token}_DEAD",
            "dead_subject": f"t{token}.dead",
            "consumer": f"t{token}",
        }
        self.client = client
        self.js = client.jetstream(timeout=10)
        self.buses: list[NatsBus] = []

    def bus(self, url: str | None = None, **options: Any) -> NatsBus:
        created = NatsBus(url or self.url, **{**self.names, **options})
        self.buses.append(created)
        return created

    async def send_command(
        self, data: bytes, headers: dict[str, str], to: str = "cro.example.com"
    ) -> None:
        await self.js.publish(f"{self.names['commands_subject']}.{to}", data, headers=headers)

    async def event(self, route: str) -> RawStreamMsg:
        return await self.js.get_last_msg(
            self.names["stream"], f"{self.names['events_subject']}.{route}"
        )

    async def count(self, stream_key: str) -> int:
        info = await self.js.stream_info(self.names[stream_key])
        return int(info.state.messages)

    async def dead_letters(self) -> list[RawStreamMsg]:
        info = await self.js.stream_info(self.names["dead_stream"])
        letters = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                letters.append(await self.js.get_msg(self.names["dead_stream"], sequence))
        return letters

    async def cleanup(self) -> None:
        for created in self.buses:
            await created.close()
        for key in ("stream", "commands_stream", "dead_stream"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(self.names[key])


@pytest.fixture(params=["raw", "nats-py"])
def intake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the bus takes its messages in: through `RawClient` (the usual), or through
    nats-py's own dispatch, as it does with a nats-py whose internals differ (here: its
    dispatch changed, `change_dispatch`). A test that asks for this runs both ways, and
    checks that the bus took the way meant (`bus._raw`)."""
    if request.param == "nats-py":
        change_dispatch(monkeypatch)
    return str(request.param)


def require_shared_server() -> None:
    """Skip without the shared server, or fail where CI requires it."""
    problem = reachable(NATS_URL)
    if problem is not None:
        message = f"no NATS server at {NATS_URL}: {problem}"
        if NATS_REQUIRED:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
async def broker() -> AsyncIterator[NatsBroker]:
    require_shared_server()
    client = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)
    side = NatsBroker(NATS_URL, client)
    try:
        yield side
    finally:
        await side.cleanup()
        await client.close()


# -- events out -------------------------------------------------------------------------------


async def test_a_published_event_is_stored_in_binary_mode_with_every_attribute(
    broker: NatsBroker,
) -> None:
    bus = broker.bus()
    await bus.connect()
    sent = event(commandid="a command id with spaces, % and ü")

    await bus.publish(sent, "in.DSOPortfolioUpdate")

    stored = await broker.event("in.DSOPortfolioUpdate")
    assert stored.subject == f"{broker.names['events_subject']}.in.DSOPortfolioUpdate"
    assert stored.data == sent.data
    headers = stored.headers or {}
    assert headers[MSG_ID] == "ev-1"
    assert headers["ce-commandid"] == "a%20command%20id%20with%20spaces,%20%25%20and%20%C3%BC"
    assert CloudEvent.from_attributes(from_nats(headers), stored.data) == sent
    assert set(from_nats(headers)) == set(sent.attributes())


async def test_an_event_written_as_a_header_block_is_stored_as_through_nats_py(
    broker: NatsBroker,
) -> None:
    """`publish` writes the HPUB header block itself rather than have nats-py encode the
    headers again; the stream must hold what nats-py's own publish stores, header for
    header (nats-py's path is the one taken while it reconnects)."""
    bus = broker.bus()
    await bus.connect()
    sent = event("ev-block", commandid="a command id with spaces, % and ü")
    await bus.publish(sent, "in.Block")
    bus._hpub = False
    await bus.publish(replace(sent, id="ev-dict"), "in.Dict")

    written, through_nats_py = await broker.event("in.Block"), await broker.event("in.Dict")
    assert written.data == through_nats_py.data == sent.data
    assert (written.headers or {})[MSG_ID] == "ev-block"
    assert {**(written.headers or {}), MSG_ID: "ev-dict", "ce-id": "ev-dict"} == (
        through_nats_py.headers
    )


async def test_the_header_block_is_made_only_when_it_is_written(
    broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While nats-py's publish is taken (it encodes the headers itself), no header block is
    made for nothing."""
    made: list[bytes | None] = []

    def header_block(sent: CloudEvent) -> bytes | None:
        made.append(block := _event_block(sent))
        return block

    _event_block = adapter.bus.nats._event_block
    monkeypatch.setattr(adapter.bus.nats, "_event_block", header_block)
    bus = broker.bus()
    await bus.connect()
    bus._hpub = False
    await bus.publish(event("ev-dict"), "in.Dict")
    assert made == []
    bus._hpub = True
    await bus.publish(event("ev-block"), "in.Block")
    assert len(made) == 1
    assert await broker.count("stream") == 2


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    st.dictionaries(
        st.sampled_from(["commandid", "correlationid", "uftpsender", "causationid"]),
        st.one_of(st.text(max_size=30), st.sampled_from([XML_CONTENT_TYPE, "text/xml"])),
    ),
    st.sampled_from([XML_CONTENT_TYPE, "application/json; charset=utf-8", "a/b", "%41 b"]),
)
def test_an_events_header_block_is_its_headers_line_by_line(
    event_id: str, extensions: dict[str, str], content_type: str
) -> None:
    """The header block `publish` writes (`_event_block`, made in one pass with the values'
    encodings known at once) holds, byte for byte, the headers nats-py's ``publish`` is
    given otherwise (`_event_headers`), in their order: whatever the values."""
    sent = replace(event(event_id, **extensions), datacontenttype=content_type)
    lines = "".join(f"{name}: {value}\r\n" for name, value in _event_headers(sent).items())
    assert _event_block(sent) == f"NATS/1.0\r\n{lines}\r\n".encode()


def test_an_events_header_block_is_not_made_for_an_id_to_be_cleaned() -> None:
    assert _event_block(event("ev x")) is None
    assert _event_block(event("ev-x\r\nInjected: yes")) is None


async def test_an_event_id_with_line_breaks_cannot_inject_headers(broker: NatsBroker) -> None:
    bus = broker.bus()
    await bus.connect()
    await bus.publish(event("ev-x\r\nInjected: yes"), "in.X")
    stored = await broker.event("in.X")
    headers = stored.headers or {}
    assert "Injected" not in headers
    assert headers[MSG_ID] == "ev-x  Injected: yes"  # nats-py turns CR and LF into spaces


async def test_outcome_routes_are_subjects_under_the_events_subject(broker: NatsBroker) -> None:
    bus = broker.bus()
    await bus.connect()
    await bus.publish(event("ev-o"), "outcome.delivered")
    assert (await broker.event("outcome.delivered")).headers[MSG_ID] == "ev-o"  # type: ignore[index]


async def test_the_same_event_published_twice_is_stored_once(broker: NatsBroker) -> None:
    bus = broker.bus()
    await bus.connect()
    await bus.publish(event("ev-1"), "in.X")
    await bus.publish(event("ev-1"), "in.X")  # the relay's retry after a lost confirm
    assert await broker.count("stream") == 1
    await bus.publish(event("ev-2"), "in.X")
    assert await broker.count("stream") == 2


async def test_a_stream_deleted_under_the_bus_is_declared_again_on_publish(
    broker: NatsBroker, intake: str
) -> None:
    bus = broker.bus()
    await bus.connect()
    assert bus._raw is (intake == "raw")
    await broker.js.delete_stream(broker.names["stream"])  # an operator, a server's loss
    await asyncio.gather(*(bus.publish(event(f"ev-{n}"), "in.X") for n in range(5)))
    assert await broker.count("stream") == 5


async def test_a_publication_no_stream_acknowledges_is_unavailable_after_the_timeout(
    broker: NatsBroker,
) -> None:
    """Each publication waits on its own reply subject for its stream's PubAck: when none
    comes (here a plain subscriber took the subject in place of the stream, so the server
    does not answer "no responders" either), it fails after `timeout`, leaving nothing
    waiting, and the next publication is acknowledged on its own."""
    bus = broker.bus(timeout=2.0)  # the JetStream API calls of the redeclaration too
    await bus.connect()
    await broker.js.delete_stream(broker.names["stream"])
    silent = await broker.client.subscribe(f"{broker.names['events_subject']}.>")
    await broker.client.flush()  # the server knows of it before the bus publishes
    try:
        with pytest.raises(BusUnavailable, match="Timeout"):
            await asyncio.wait_for(bus.publish(event("ev-lost"), "in.X"), 10)
        assert bus._ack_waiting == {}
    finally:
        await silent.unsubscribe()
        await broker.client.flush()  # and that it is gone
    await bus.publish(event("ev-next"), "in.X")  # no responders: the stream declared again
    assert (await broker.event("in.X")).headers[MSG_ID] == "ev-next"  # type: ignore[index]


async def test_publications_in_flight_without_pubacks_each_fail_at_their_own_deadline(
    broker: NatsBroker,
) -> None:
    """One timer serves the PubAck deadlines of every publication in flight: two started
    apart, neither acknowledged, each fails once its own `timeout` passed (not at the first
    one's, not never), and nothing is left waiting or timed after them."""
    bus = broker.bus(timeout=1.0)
    await bus.connect()
    await broker.js.delete_stream(broker.names["stream"])
    silent = await broker.client.subscribe(f"{broker.names['events_subject']}.>")
    await broker.client.flush()
    loop = asyncio.get_running_loop()

    async def timed_out(name: str, delay: float) -> float:
        await asyncio.sleep(delay)
        started = loop.time()
        with pytest.raises(BusUnavailable, match="Timeout"):
            await bus.publish(event(name), "in.X")
        return loop.time() - started

    try:
        took = await asyncio.wait_for(
            asyncio.gather(timed_out("ev-a", 0.0), timed_out("ev-b", 0.5)), 10
        )
    finally:
        await silent.unsubscribe()
        await broker.client.flush()
    assert all(1.0 <= seconds < 2.5 for seconds in took), took
    assert bus._ack_waiting == {} and bus._ack_timer is None


async def test_a_publication_the_stream_refuses_is_not_taken_for_stored(
    broker: NatsBroker,
) -> None:
    """A PubAck that carries an error (here the stream is full and discards new messages)
    is no confirm: the relay must keep the event and retry."""
    bus = broker.bus()
    await bus.connect()
    info = await broker.js.stream_info(broker.names["stream"])
    await broker.js.update_stream(info.config.evolve(max_msgs=1, discard=DiscardPolicy.NEW))
    await bus.publish(event("ev-1"), "in.X")
    with pytest.raises(BusUnavailable) as refused:
        await bus.publish(event("ev-2"), "in.X")
    assert isinstance(refused.value.__cause__, nats.js.errors.APIError)
    assert "maximum messages" in str(refused.value.__cause__)
    assert await broker.count("stream") == 1


async def test_a_subject_no_stream_can_take_is_unroutable(broker: NatsBroker) -> None:
    bus = broker.bus()
    await bus.connect()
    await broker.js.delete_stream(broker.names["stream"])
    # Another stream took part of our subjects: ours cannot be declared again.
    squatter = broker.names["stream"] + "_OTHER"
    await broker.js.add_stream(
        StreamConfig(name=squatter, subjects=[f"{broker.names['events_subject']}.in.X"])
    )
    try:
        with pytest.raises(Unroutable, match="overlap"):
            await bus.publish(event(), "outcome.delivered")
    finally:
        await broker.js.delete_stream(squatter)


@pytest.mark.parametrize("route", ["in.*", "in.>", "in..X", "in X", ""])
async def test_a_route_that_is_no_subject_is_unroutable_and_sends_nothing(
    broker: NatsBroker, route: str
) -> None:
    bus = broker.bus()
    await bus.connect()
    with pytest.raises(Unroutable):
        await bus.publish(event(), route)
    await bus.publish(event("ev-after"), "in.X")  # the connection survived
    assert await broker.count("stream") == 1


async def test_an_event_over_the_servers_max_payload_is_unroutable(broker: NatsBroker) -> None:
    bus = broker.bus()
    await bus.connect()
    big = CloudEvent(
        "ev-big", "urn:uftp:DSO:d", "uftp.X", datetime.now(UTC), XML_CONTENT_TYPE, b"x" * 2**21
    )
    with pytest.raises(Unroutable, match="bytes of data"):
        await bus.publish(big, "in.X")


async def test_an_unreachable_server_is_unavailable_at_once() -> None:
    bus = NatsBus(f"nats://127.0.0.1:{free_port()}", timeout=10)
    started = time.monotonic()
    with pytest.raises(BusUnavailable, match="cannot connect"):
        await bus.connect()
    assert time.monotonic() - started < 5  # the first refusal ends it, not the timeout
    with pytest.raises(BusUnavailable):
        await bus.publish(event(), "in.X")
    assert not bus.health().connected


async def test_a_server_that_never_answers_is_unavailable_after_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        bus = NatsBus(f"nats://127.0.0.1:{port}", timeout=1.0)
        started = time.monotonic()
        with pytest.raises(BusUnavailable):
            await bus.connect()
        assert 0.9 < time.monotonic() - started < 5
        # Given up, or cancelled by its caller: nothing goes on trying behind its back.
        connecting = asyncio.create_task(bus.connect())
        await asyncio.sleep(0.3)
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        tried = len(accepted)
        await asyncio.sleep(3.0)  # nats-py would have tried again by now
        assert len(accepted) == tried
    finally:
        for writer in accepted:
            writer.close()
        silent.close()


# -- commands in ------------------------------------------------------------------------------


async def test_a_command_is_handed_over_and_acked_only_after_the_handler_returned(
    broker: NatsBroker, intake: str
) -> None:
    bus = broker.bus()
    await bus.connect()
    assert bus._raw is (intake == "raw")
    handler = Recorder(gate=asyncio.Event())
    await bus.consume(handler)
    headers = command_headers("cmd-1", **{"X-Trace": "t-1", MSG_ID: "msg-id-1"})
    await broker.send_command(b"<FlexRequest/>", headers)

    await eventually(lambda: len(handler.commands) == 1, "the command handed over")
    command = handler.commands[0]
    assert command.id == "cmd-1"
    assert command.data == b"<FlexRequest/>"
    assert command.attributes["datacontenttype"] == XML_CONTENT_TYPE
    assert command.attributes["uftprecipient"] == "cro.example.com"
    assert command.message_id == "msg-id-1"
    assert not command.redelivered
    assert command.headers == {"X-Trace": "t-1", MSG_ID: "msg-id-1"}
    await asyncio.sleep(0.5)
    assert await broker.count("commands_stream") == 1  # not acked while the handler runs

    handler.gate.set()  # type: ignore[union-attr]
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the ack")
    assert len(handler.commands) == 1
    assert bus.health().consuming


async def test_without_a_cloudevents_id_the_command_id_is_the_nats_message_id(
    broker: NatsBroker,
) -> None:
    bus = broker.bus()
    await bus.connect()
    handler = Recorder()
    await bus.consume(handler)
    await broker.send_command(b"<x/>", {MSG_ID: "only-msg-id"})
    await eventually(lambda: len(handler.commands) == 1, "the command")
    assert handler.commands[0].id == "only-msg-id"


async def test_a_rejected_command_is_dead_lettered_with_its_headers_and_the_reason(
    broker: NatsBroker, intake: str
) -> None:
    bus = broker.bus()
    await bus.connect()
    assert bus._raw is (intake == "raw")
    handler = Recorder([Verdict.REJECT])
    await bus.consume(handler)
    headers = command_headers("cmd-bad", **{"X-Trace": "t-2"})
    await broker.send_command(b"<NotAMessage/>", headers, to="nobody.example.com")

    await eventually(lambda: _is(broker.count("dead_stream"), 1), "the dead letter")
    (letter,) = await broker.dead_letters()
    assert letter.subject == f"{broker.names['dead_subject']}.nobody.example.com"
    assert letter.data == b"<NotAMessage/>"
    assert letter.headers is not None
    assert letter.headers[DEAD_REASON] == "rejected"
    assert letter.headers[DEAD_SUBJECT] == f"{broker.names['commands_subject']}.nobody.example.com"
    assert letter.headers[DEAD_DELIVERIES] == "1"
    assert {k: letter.headers[k] for k in headers} == headers
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the command gone")
    await asyncio.sleep(0.5)
    assert len(handler.commands) == 1  # terminated: never delivered again


async def test_a_command_is_kept_until_its_dead_letter_is_stored(broker: NatsBroker) -> None:
    bus = broker.bus(requeue_delay=0.1, max_deliver=100)
    await bus.connect()
    # The dead-letter stream gone, and another stream took part of its subjects: no dead
    # letter can be stored for now.
    await broker.js.delete_stream(broker.names["dead_stream"])
    squatter = broker.names["dead_stream"] + "_OTHER"
    await broker.js.add_stream(
        StreamConfig(name=squatter, subjects=[f"{broker.names['dead_subject']}.elsewhere"])
    )
    handler = Recorder([Verdict.REJECT] * 100)
    await bus.consume(handler)
    try:
        await broker.send_command(b"<bad/>", command_headers("cmd-kept"))
        await eventually(lambda: len(handler.commands) >= 3, "rejected, and delivered again")
        assert await broker.count("commands_stream") == 1  # not terminated: not lost
    finally:
        await broker.js.delete_stream(squatter)
    # Its next rejection declares the dead-letter stream again and stores it there.
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the command settled")
    (letter,) = await broker.dead_letters()
    assert letter.headers[DEAD_REASON] == "rejected"  # type: ignore[index]
    assert letter.data == b"<bad/>"


async def test_a_handler_that_raises_gets_the_command_again(broker: NatsBroker) -> None:
    bus = broker.bus(requeue_delay=0.1)
    await bus.connect()
    calls: list[Command] = []

    async def flaky(command: Command) -> Verdict:
        calls.append(command)
        if len(calls) == 1:
            raise RuntimeError("the store went away")
        return Verdict.ACK

    await bus.consume(flaky)
    await broker.send_command(b"<x/>", command_headers("cmd-flaky"))
    await eventually(lambda: len(calls) == 2, "the second delivery")
    assert calls[1].redelivered
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the ack")
    assert bus.health().consuming


async def test_a_command_with_malformed_cloudevents_headers_is_dead_lettered_unhandled(
    broker: NatsBroker,
) -> None:
    bus = broker.bus()
    await bus.connect()
    handler = Recorder()
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers("cmd", **{"ce-uftprecipient": "%ZZ"}))
    await eventually(lambda: _is(broker.count("dead_stream"), 1), "the dead letter")
    (letter,) = await broker.dead_letters()
    assert letter.headers[DEAD_REASON] == "malformed"  # type: ignore[index]
    assert handler.commands == []


async def test_a_requeued_command_is_delivered_again_after_the_delay(broker: NatsBroker) -> None:
    bus = broker.bus(requeue_delay=0.4)
    await bus.connect()
    handler = Recorder([Verdict.REQUEUE])
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers("cmd-again"))

    await eventually(lambda: len(handler.commands) == 2, "the second delivery")
    first, second = handler.commands
    assert first.id == second.id == "cmd-again"
    assert (first.redelivered, second.redelivered) == (False, True)
    assert handler.times[1] - handler.times[0] >= 0.35
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the ack")
    assert await broker.count("dead_stream") == 0


async def test_a_command_requeued_up_to_the_delivery_limit_is_dead_lettered(
    broker: NatsBroker,
) -> None:
    bus = broker.bus(max_deliver=3, requeue_delay=0.05)
    await bus.connect()
    handler = Recorder([Verdict.REQUEUE] * 10)
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers("cmd-store-down"))

    await eventually(lambda: _is(broker.count("dead_stream"), 1), "the dead letter")
    (letter,) = await broker.dead_letters()
    assert letter.headers[DEAD_REASON] == "delivery_limit"  # type: ignore[index]
    assert letter.headers[DEAD_DELIVERIES] == "3"  # type: ignore[index]
    await asyncio.sleep(0.5)
    assert len(handler.commands) == 3
    assert await broker.count("commands_stream") == 0


async def test_a_command_no_handler_ever_settled_is_dead_lettered_past_the_limit(
    broker: NatsBroker,
) -> None:
    """A poison command: each adapter that took it died before settling it. Its next
    delivery goes to the dead letters without reaching a handler again."""
    bus = broker.bus(max_deliver=2, ack_wait=1.0)
    await bus.connect()  # declares the consumer
    await broker.send_command(b"<poison/>", command_headers("cmd-poison"))
    crashed = await broker.js.pull_subscribe_bind(
        broker.names["consumer"], stream=broker.names["commands_stream"]
    )
    for attempt in (1, 2):  # two deliveries, never settled (the ack_wait passes each time)
        (taken,) = await crashed.fetch(1, timeout=PATIENCE)
        assert taken.metadata.num_delivered == attempt
    await crashed.unsubscribe()

    handler = Recorder()
    await bus.consume(handler)
    await eventually(lambda: _is(broker.count("dead_stream"), 1), "the dead letter")
    (letter,) = await broker.dead_letters()
    assert letter.headers[DEAD_REASON] == "delivery_limit"  # type: ignore[index]
    assert letter.headers[DEAD_DELIVERIES] == "3"  # type: ignore[index]
    assert handler.commands == []
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the command gone")


async def test_close_finishes_the_commands_in_hand_and_pulls_no_more(
    broker: NatsBroker,
) -> None:
    first = broker.bus(batch=2, ack_wait=60.0)
    await first.connect()
    for index in range(3):
        await broker.send_command(b"<x/>", command_headers(f"cmd-{index}"))
    closing: list[asyncio.Task[None]] = []
    handled: list[str] = []

    async def close_while_handling(command: Command) -> Verdict:
        if not closing:
            closing.append(asyncio.create_task(first.close()))
        await asyncio.sleep(0.3)
        handled.append(command.id or "")
        return Verdict.ACK

    await first.consume(close_while_handling)
    await eventually(lambda: bool(closing) and closing[0].done(), "the close")
    assert not first.health().consuming
    assert sorted(handled) == ["cmd-0", "cmd-1"]  # the batch in hand, handled at once

    second = broker.bus()
    await second.connect()
    handler = Recorder()
    await second.consume(handler)
    # Well before the ack_wait of 60 s: the one left was never taken.
    await eventually(lambda: len(handler.commands) == 1, "the command left")
    assert [c.id for c in handler.commands] == ["cmd-2"]
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "all acked")


async def test_close_also_handles_the_commands_that_arrived_meanwhile(
    broker: NatsBroker,
) -> None:
    bus = broker.bus(batch=4, ack_wait=60.0)
    await bus.connect()
    gate = asyncio.Event()
    handler = Recorder(gate=gate)
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers("cmd-0"))
    await eventually(lambda: len(handler.commands) == 1, "the first command in hand")
    # The pull request is not spent: these two reach us while cmd-0 is handled.
    for index in (1, 2):
        await broker.send_command(b"<x/>", command_headers(f"cmd-{index}"))
    await asyncio.sleep(0.5)
    closing = asyncio.create_task(bus.close())
    await asyncio.sleep(0.1)
    gate.set()
    await closing
    assert [c.id for c in handler.commands] == ["cmd-0", "cmd-1", "cmd-2"]
    # Acked, not left to the ack wait of 60 s.
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "all acked")


async def test_the_commands_of_a_batch_are_handled_at_once(broker: NatsBroker) -> None:
    bus = broker.bus(batch=8)
    await bus.connect()
    for index in range(4):
        await broker.send_command(b"<x/>", command_headers(f"cmd-{index}"))
    gate = asyncio.Event()
    handler = Recorder(gate=gate)
    await bus.consume(handler)
    # All four in hand before any returns: their commits can share a transaction.
    await eventually(lambda: len(handler.commands) == 4, "four commands in hand at once")
    gate.set()
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "all acked")


async def test_commands_one_at_a_time_share_a_pull_request(broker: NatsBroker, intake: str) -> None:
    """A command costs its delivery and its ack: the pull request that brought it lingers
    for the next ones, instead of one request (and a "no more messages") per command."""
    requests: list[bytes] = []

    async def count(message: Msg) -> None:
        requests.append(message.data)

    names = broker.names
    watch = await broker.client.subscribe(
        f"$JS.API.CONSUMER.MSG.NEXT.{names['commands_stream']}.{names['consumer']}", cb=count
    )
    bus = broker.bus(batch=16)
    await bus.connect()
    assert bus._raw is (intake == "raw")
    handler = Recorder()
    await bus.consume(handler)
    await eventually(lambda: len(requests) == 1, "the first pull request")
    for index in range(8):
        await broker.send_command(b"<x/>", command_headers(f"cmd-{index}"))
        await eventually(lambda index=index: len(handler.commands) == index + 1, "the command")
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "all acked")
    await watch.unsubscribe()
    # One request per _PULL_SECONDS at most while they came one by one (not one each).
    assert len(requests) < 8, requests


async def test_the_consumer_is_declared_again_when_the_server_lost_it(
    broker: NatsBroker,
) -> None:
    bus = broker.bus()
    await bus.connect()
    handler = Recorder()
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers("cmd-before"))
    await eventually(lambda: len(handler.commands) == 1, "the first command")

    await broker.js.delete_stream(broker.names["commands_stream"])  # consumer gone with it
    await eventually(
        lambda: _exists(broker.js, broker.names["commands_stream"]), "the stream declared again"
    )
    await broker.send_command(b"<x/>", command_headers("cmd-after"))
    await eventually(lambda: len(handler.commands) == 2, "the command after")
    assert handler.commands[1].id == "cmd-after"


async def test_while_the_consumer_cannot_be_declared_health_says_why_and_it_retries(
    broker: NatsBroker,
) -> None:
    bus = broker.bus()
    await bus.connect()
    handler = Recorder()
    await bus.consume(handler)
    await eventually(lambda: bus.health().consuming, "consuming")

    # The commands stream gone, and another stream took its subjects: a deployment error.
    await broker.js.delete_stream(broker.names["commands_stream"])
    squatter = broker.names["commands_stream"] + "_OTHER"
    await broker.js.add_stream(
        StreamConfig(name=squatter, subjects=[f"{broker.names['commands_subject']}.>"])
    )
    try:
        await eventually(lambda: "cannot declare" in bus.health().detail, "the reason shown")
        health = bus.health()
        assert health.connected and not health.consuming
    finally:
        await broker.js.delete_stream(squatter)

    await eventually(lambda: bus.health().consuming, "consuming again")
    await broker.send_command(b"<x/>", command_headers("cmd-after"))
    await eventually(lambda: len(handler.commands) == 1, "the command")


async def test_connect_adds_its_subjects_to_an_existing_stream_and_keeps_its_settings(
    broker: NatsBroker,
) -> None:
    other = f"{broker.names['events_subject']}-legacy.>"
    await broker.js.add_stream(
        StreamConfig(name=broker.names["stream"], subjects=[other], max_age=3600.0)
    )
    bus = broker.bus()
    await bus.connect()
    info = await broker.js.stream_info(broker.names["stream"])
    assert info.config.subjects == [other, f"{broker.names['events_subject']}.>"]
    assert info.config.max_age == 3600.0
    await bus.connect()  # connected already: nothing happens


def test_the_constructor_refuses_wildcards_and_nonsense() -> None:
    with pytest.raises(ValueError, match="events_subject"):
        NatsBus(events_subject="uftp.*")
    with pytest.raises(ValueError):
        NatsBus(max_deliver=0)


# -- the connection lost ----------------------------------------------------------------------


class CuttableProxy:
    """TCP between the adapter and the server, cut on demand: the broker closing our
    connection, as `close_all_connections` or a load balancer would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.accepted = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


def read_by_intake(bus: NatsBus) -> bool:
    """Whether `bus`'s connection is read by `SocketIntake`, not nats-py's read loop."""
    transport: Any = getattr(bus._nc, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    return writer is not None and isinstance(writer.transport.get_protocol(), SocketIntake)


async def test_commands_and_events_pass_through_the_intake(broker: NatsBroker) -> None:
    bus = broker.bus()
    await bus.connect()
    assert bus._raw and read_by_intake(bus)
    await carries_commands_and_events(broker, bus, "intake")
    stats = bus._nc.stats  # type: ignore[union-attr]
    assert stats["in_msgs"] >= 3  # the probe, the command, the PubAck: counted as nats-py does


async def test_publications_larger_than_the_socket_takes_at_once_are_all_confirmed(
    broker: NatsBroker,
) -> None:
    """Forty events of 600 kB at once fill the socket's send buffer: the intake passes the
    transport's pause and resume on to the stream nats-py's writer waits on (``drain``), so
    that writing waits and goes on, and every PubAck comes back through the intake."""
    bus = broker.bus(timeout=30)
    await bus.connect()
    assert read_by_intake(bus)
    big = [replace(event(f"ev-big-{n}"), data=bytes([n]) * 600_000) for n in range(40)]
    publishing = asyncio.gather(*(bus.publish(one, "in.Big") for one in big))
    await asyncio.wait_for(publishing, 3 * PATIENCE)  # a writer never resumed waits for ever
    assert await broker.count("stream") == 40
    assert (await broker.event("in.Big")).data in {one.data for one in big}


@pytest.fixture
def pinging_server(tmp_path: Path) -> Iterator[OwnServer]:
    """A nats-server of the test's own that pings its clients every 100 ms and drops one
    that leaves two pings unanswered."""
    config = tmp_path / "nats.conf"
    config.write_text('ping_interval: "100ms"\nping_max: 2\n')
    yield from running(OwnServer(tmp_path / "jetstream", config))


async def test_the_servers_pings_are_answered_through_the_intake(
    pinging_server: OwnServer,
) -> None:
    client = await nats.connect(pinging_server.url, connect_timeout=5)
    broker = NatsBroker(pinging_server.url, client)
    try:
        bus = broker.bus()
        await bus.connect()
        assert read_by_intake(bus)
        await asyncio.sleep(1.5)  # 15 pings: a connection that left them unanswered is gone
        assert bus._nc is not None and bus._nc.stats["reconnects"] == 0
        assert bus.health().connected
        await bus._nc.flush(5)  # and our own ping's PONG comes back through it
        await carries_commands_and_events(broker, bus, "pinged")
    finally:
        await broker.cleanup()
        await client.close()


class GarblingServer:
    """Speaks the NATS handshake (INFO; CONNECT and PING answered with PONG), then writes
    `after` on its first connection only; counts the connections."""

    def __init__(self, after: bytes) -> None:
        self.after = after
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"nats://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        info = {"server_id": "garbling", "version": "2.10.0", "max_payload": 1048576}
        writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
        with contextlib.suppress(OSError):
            while line := await reader.readline():
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
                    if self.accepted == 1:
                        writer.write(self.after)
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_server_that_breaks_the_protocol_is_left_and_connected_to_again() -> None:
    """What the intake cannot read as the protocol ends the connection as nats-py's read
    loop ends it (a reconnection), not a deaf one."""
    server = GarblingServer(b"MSG subject not-a-sid 2\r\nxx\r\n")
    url = await server.start()
    nc = await open_connection([url], name="garbled", timeout=5)
    try:
        assert isinstance(nc, RawClient)
        await eventually(lambda: server.accepted >= 2, "connected again")
        await eventually(lambda: nc.is_connected, "connected")
        assert nc.stats["reconnects"] >= 1
    finally:
        await nc.close()
        await server.stop()


def test_the_intake_reads_under_uvloop_too() -> None:
    """uvloop's transports are no `asyncio.Transport`, but they take another protocol as
    asyncio's do: the intake reads there as well."""
    uvloop = pytest.importorskip("uvloop")
    require_shared_server()

    async def run() -> None:
        client = await nats.connect(NATS_URL, connect_timeout=5)
        broker = NatsBroker(NATS_URL, client)
        try:
            bus = broker.bus()
            await bus.connect()
            assert read_by_intake(bus)
            await carries_commands_and_events(broker, bus, "uvloop")
        finally:
            await broker.cleanup()
            await client.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


async def test_consuming_and_publishing_resume_after_the_connection_is_killed(
    broker: NatsBroker,
) -> None:
    port = int(NATS_URL.rsplit(":", 1)[-1])
    proxy = CuttableProxy(port)
    through = await proxy.start()
    try:
        bus = broker.bus(f"nats://127.0.0.1:{through}", ack_wait=3.0)
        await bus.connect()
        handler = Recorder(gate=asyncio.Event())
        await bus.consume(handler)
        await broker.send_command(b"<x/>", command_headers("cmd-in-hand"))
        await eventually(lambda: len(handler.commands) == 1, "the command in hand")

        proxy.cut()  # while the handler holds the command: its ack goes nowhere
        await eventually(lambda: not bus.health().connected, "the loss noticed")
        handler.gate.set()  # type: ignore[union-attr]
        await eventually(lambda: bus.health().connected, "reconnected")
        await broker.send_command(b"<x/>", command_headers("cmd-after-cut"))

        await eventually(
            lambda: "cmd-after-cut" in [c.id for c in handler.commands], "the next command"
        )
        await eventually(lambda: _is(broker.count("commands_stream"), 0), "nothing left")
        ids = [c.id for c in handler.commands]
        assert ids.count("cmd-after-cut") == 1
        assert 1 <= ids.count("cmd-in-hand") <= 2  # its ack lost or buffered: never lost
        await eventually(lambda: bus.health().consuming, "consuming again")
        await bus.publish(event("ev-after-cut"), "in.X")
        assert (await broker.event("in.X")).headers[MSG_ID] == "ev-after-cut"  # type: ignore[index]
        assert proxy.accepted >= 2
        assert read_by_intake(bus)  # the new connection's socket too
    finally:
        await proxy.stop()


class OwnServer:
    """A nats-server of the test's own, with JetStream on file storage in a temp dir."""

    def __init__(self, store: Path, config: Path | None = None) -> None:
        self.store = store
        #: A configuration file of the server's (users, permissions), if any.
        self.config = config
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, fresh: bool = False) -> None:
        """Start; `fresh`: on empty storage, a server that lost its state."""
        if fresh:
            self.store = self.store.with_name(self.store.name + "-fresh")
        argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        if self.config is not None:
            argv += ["-c", str(self.config)]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + PATIENCE
        while reachable(self.url) is not None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"nats-server on {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnServer]:
    server = OwnServer(tmp_path / "jetstream")
    yield from running(server)


def running(server: OwnServer) -> Iterator[OwnServer]:
    """`server` started, and killed after the test; skips or fails without a nats-server."""
    if not Path(NATS_SERVER).exists():
        if NATS_REQUIRED:
            pytest.fail(f"no nats-server at {NATS_SERVER}")
        pytest.skip(f"no nats-server at {NATS_SERVER}")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_consuming_and_publishing_resume_after_the_server_restarts(
    own_server: OwnServer,
) -> None:
    client = await nats.connect(own_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    broker = NatsBroker(own_server.url, client)
    try:
        # A server killed this way may come back with its consumer's state ahead of its
        # stream's (a delivery it recorded, a message it did not): it then takes the next
        # message for the one awaiting its ack, and delivers it once the ack wait is over.
        # Late, never lost; a short ack wait keeps that within the test's patience.
        bus = broker.bus(timeout=1.0, ack_wait=3.0)
        await bus.connect()
        handler = Recorder()
        await bus.consume(handler)
        await bus.publish(event("ev-before"), "in.X")
        await broker.send_command(b"<x/>", command_headers("cmd-before"))
        await eventually(lambda: len(handler.commands) == 1, "the first command")
        await eventually(lambda: bus.health().consuming, "consuming")

        own_server.kill()
        await eventually(lambda: not bus.health().connected, "the outage noticed")
        assert not bus.health().consuming
        with pytest.raises(BusUnavailable):
            await bus.publish(event("ev-during"), "in.X")

        own_server.start()  # same port, same storage
        await eventually(lambda: bus.health().connected, "reconnected")
        await eventually(lambda: client.is_connected, "the test's client back")
        await broker.send_command(b"<x/>", command_headers("cmd-after"))
        await eventually(lambda: "cmd-after" in handler.ids, "the command after the restart")
        # The ack of the command from before may have died with the server: then the server
        # delivers it again (at least once; its id makes it one message).
        assert handler.ids.count("cmd-after") == 1
        assert set(handler.ids) == {"cmd-before", "cmd-after"}
        assert handler.ids.count("cmd-before") <= 2
        await eventually(lambda: bus.health().consuming, "consuming again")

        await bus.publish(event("ev-during"), "in.X")  # the relay's retry
        await bus.publish(event("ev-after"), "in.X")
        assert read_by_intake(bus)
        # File storage kept the event from before; the failed publish may have reached the
        # server before it died, in which case the retry was a duplicate within the window.
        assert await broker.count("stream") == 3
    finally:
        await broker.cleanup()
        await client.close()


async def test_a_server_restarted_without_its_storage_gets_streams_and_consumer_again(
    own_server: OwnServer,
) -> None:
    client = await nats.connect(own_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    broker = NatsBroker(own_server.url, client)
    try:
        bus = broker.bus(timeout=8.0)
        await bus.connect()
        handler = Recorder()
        await bus.consume(handler)

        own_server.kill()
        await eventually(lambda: not bus.health().connected, "the outage noticed")
        # Published during the outage: nats-py sends it first thing after reconnecting,
        # before the streams exist again; the bus waits for them and publishes again.
        publishing = asyncio.create_task(bus.publish(event("ev-after"), "in.X"))
        await asyncio.sleep(0.2)
        own_server.start(fresh=True)
        await publishing
        assert (await broker.event("in.X")).headers[MSG_ID] == "ev-after"  # type: ignore[index]

        await eventually(lambda: client.is_connected, "the test's client back")
        await eventually(
            lambda: _exists(broker.js, broker.names["commands_stream"]), "the commands stream"
        )
        await broker.send_command(b"<x/>", command_headers("cmd-after"))
        await eventually(lambda: len(handler.commands) == 1, "the command after the restart")
    finally:
        await broker.cleanup()
        await client.close()


async def test_health_says_what_is_true(broker: NatsBroker) -> None:
    bus = broker.bus()
    assert bus.health() == bus.health().__class__(False, False, "")
    await bus.connect()
    assert bus.health().connected and not bus.health().consuming
    await bus.consume(Recorder())
    await eventually(lambda: bus.health().consuming, "consuming")
    await bus.close()
    assert not bus.health().connected and not bus.health().consuming


async def test_the_readme_nats_clients_read_events_and_send_a_command(
    broker: NatsBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    """README "NATS JetStream", run as written: only the names are this test's own."""
    (example,) = [code for code in python_examples() if "import nats" in code]
    code = (
        example.replace('STREAM = "UFTP"', f'STREAM = "{broker.names["stream"]}"')
        .replace('EVENTS = "uftp.events"', f'EVENTS = "{broker.names["events_subject"]}"')
        .replace('COMMANDS = "uftp.commands"', f'COMMANDS = "{broker.names["commands_subject"]}"')
    )
    assert all(broker.names[key] in code for key in ("stream", "events_subject"))
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), namespace)  # the project's own README

    bus = broker.bus()
    await bus.connect()
    handler = Recorder()
    await bus.consume(handler)
    seen: set[str] = set()
    consuming = asyncio.ensure_future(namespace["consume"](NATS_URL, "my-system", seen))
    try:
        await bus.publish(event("ev-1", commandid="cmd 1"), "outcome.delivered")
        await bus.publish(event("ev-2"), "in.DSOPortfolioUpdate")
        await eventually(lambda: seen == {"ev-1", "ev-2"}, "both events read")
        await namespace["send_command"](NATS_URL, "cro.example.com", "readme-1", b"<T/>")
        await eventually(lambda: len(handler.commands) == 1, "the command")
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
    assert capsys.readouterr().out.splitlines() == [
        "outcome.delivered uftp.DSOPortfolioUpdate cmd 1",
        "in.DSOPortfolioUpdate uftp.DSOPortfolioUpdate None",
    ]
    (command,) = handler.commands
    assert (command.id, command.data) == ("readme-1", b"<T/>")
    assert command.attributes == {
        "datacontenttype": XML_CONTENT_TYPE,
        "uftprecipient": "cro.example.com",
    }


async def test_a_command_is_written_at_once_only_behind_nothing_of_nats_pys(
    broker: NatsBroker,
) -> None:
    """`RawClient.write_now` may put a settlement or an event on the socket ahead of nats-py's
    flusher: only when nothing of nats-py's waits in its buffer, so that what was sent first
    arrives first; and not again within `_WRITE_GAP`, leaving a burst to the flusher."""
    subject = f"{broker.names['events_subject']}.order"
    seen: list[bytes] = []

    async def take(message: Msg) -> None:
        seen.append(message.data)

    await broker.client.subscribe(subject, cb=take)
    await broker.client.flush()
    nc = await open_connection([broker.url], name="order", timeout=5)
    try:
        assert isinstance(nc, RawClient)
        await nc.publish(subject, b"first")  # in nats-py's buffer until its flusher runs
        await _send(nc, f"PUB {subject} 6\r\nsecond\r\n".encode(), 6)
        await asyncio.sleep(0.05)  # past the gap
        await _send(nc, f"PUB {subject} 5\r\nthird\r\n".encode(), 5)  # at once
        assert nc._pending_data_size == 0
        await _send(nc, f"PUB {subject} 6\r\nfourth\r\n".encode(), 6)  # within the gap
        assert nc._pending_data_size > 0
        await eventually(lambda: len(seen) == 4, "all four")
        assert seen == [b"first", b"second", b"third", b"fourth"]
    finally:
        await nc.close()


async def test_a_raw_taker_that_fails_leaves_the_connection_up(broker: NatsBroker) -> None:
    """`RawClient` calls its takers in nats-py's read loop: a failure there is logged, not
    the end of the connection (nats-py's read loop would stop reading, every subscription
    deaf until its pings went unanswered)."""
    subject = f"{broker.names['events_subject']}.taker"
    seen: list[bytes] = []

    def take(subject: bytes, reply: bytes, data: bytes, block: bytes | None) -> None:
        seen.append(data)
        if data == b"bad":
            raise RuntimeError("a bug of the taker")

    nc = await open_connection([broker.url], name="taker", timeout=5)
    try:
        assert isinstance(nc, RawClient)
        nc.take_raw(await nc.subscribe(subject), take)
        await nc.flush()
        for data in (b"bad", b"good", b"better"):
            await broker.client.publish(subject, data)
        await eventually(lambda: len(seen) == 3, "all three taken")
        assert seen == [b"bad", b"good", b"better"]
        assert nc.is_connected and nc.stats["reconnects"] == 0
    finally:
        await nc.close()


HEADER_BLOCKS = [
    b"NATS/1.0\r\nce-id: cmd-1\r\nNats-Msg-Id: m-1\r\n\r\n",
    b"NATS/1.0\r\nName:Value\r\nName:  Second \t\r\ncolon: a: b\r\n\r\n",
    b"NATS/1.0\r\nBad Name: x\r\nNoColon\r\n\xc3\xa9t\xc3\xa9: not ASCII\r\nv: \xff\xfe\r\n\r\n",
    b"NATS/1.0\r\nunit\x1fseparator: x\r\n : empty name\r\n\tTab: y\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 7\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0 404 No Messages\r\n\r\n",
]


@pytest.mark.parametrize("block", HEADER_BLOCKS)
async def test_a_header_block_is_read_as_nats_py_reads_it(block: bytes) -> None:
    """`RawClient`'s messages have their headers read by the bus, in one pass: names and
    values as nats-py's parser gives them, odd lines included; the inline status apart."""
    theirs = dict(await Client()._process_headers(block) or {})
    status = theirs.pop("Status", "")
    theirs.pop("Description", None)
    assert (_status(block), _parse_headers(block)) == (status, theirs)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=24),
            st.builds(
                lambda name, value: name + b":" + value,
                st.binary(max_size=12),
                st.binary(max_size=12),
            ),
        ),
        max_size=8,
    )
)
def test_any_header_block_is_read_as_nats_py_reads_it(lines: list[bytes]) -> None:
    """The same on header lines of any bytes (CR, LF, colons, white space, non-ASCII)."""
    block = b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    theirs = asyncio.run(Client()._process_headers(block)) or {}
    assert (_status(block), _parse_headers(block)) == ("", theirs)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.builds(
            lambda name, spaces, value: name + b":" + spaces + value,
            st.one_of(
                st.from_regex(rb"[!-9;-~]{1,8}", fullmatch=True),
                st.text(st.characters(min_codepoint=0x1F, max_codepoint=0x7F), max_size=8).map(
                    str.encode
                ),
                st.binary(max_size=8),
            ),
            st.sampled_from([b"", b" ", b" ", b"  ", b"\t"]),
            st.one_of(
                st.from_regex(rb"[ -~]{0,12}", fullmatch=True),
                st.text(st.characters(min_codepoint=0x1F, max_codepoint=0x7F), max_size=12).map(
                    str.encode
                ),
            ),
        ),
        max_size=5,
    )
)
def test_a_plain_header_block_is_read_as_any_block_is(lines: list[bytes]) -> None:
    """A block read by regular expression (`_PLAIN_LINE`) has the headers line by line
    reading gives it, and nats-py's: lines near plain ones (spaces, colons, control
    characters, odd names) included."""
    block = b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    theirs = asyncio.run(Client()._process_headers(block)) or {}
    assert _parse_headers(block) == _parse_header_lines(block) == theirs
    assert read_at_once(block) == bool(PLAIN_BLOCK.fullmatch(block))


#: What `_parse_headers` read at once before it counted the lines found: a block that this
#: matched. It must read at once exactly those.
PLAIN_BLOCK = re.compile(rb"NATS/1\.0\r\n(?:[!-9;-~]+: ?(?:[!-~](?:[ -~]*[!-~])?)?\r\n)*\r\n")


def read_at_once(block: bytes) -> bool:
    """Whether `_parse_headers` read `block` at once, without `_parse_header_lines`."""
    line_by_line: list[bytes] = []

    def parse_header_lines(block: bytes) -> dict[str, str]:
        line_by_line.append(block)
        return _parse_header_lines(block)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adapter.bus.nats, "_parse_header_lines", parse_header_lines)
        _parse_headers(block)
    return not line_by_line


#: Lines of header blocks near plain ones (plain lines, odd ones, a status line), each with
#: its end: CRLF mostly, else a CR or LF alone, an empty line after it, none.
BLOCK_LINES = st.lists(
    st.tuples(
        st.one_of(
            st.from_regex(rb"[!-9;-~]{1,6}: ?[!-~]([ -~]{0,8}[!-~])?", fullmatch=True),
            st.sampled_from(
                [
                    b"ce-id: cmd-1",
                    b"Nats-Msg-Id:m-1",
                    b"ce-source: urn:uftp:DSO:dso.example.com",
                    b"ce-x: a b",
                    b"ce-x: ",
                    b"ce-y:",
                    b"ce-y:  two spaces",
                    b"ce-y: trailing ",
                    b"Bad Name: x",
                    b": no name",
                    b"NoColon",
                    b"",
                    b" ",
                    b"NATS/1.0",
                    b"NATS/1.0 408 Request Timeout",
                    b"v: \xc3\xa9",
                    b"v: \x7f",
                ]
            ),
        ),
        st.sampled_from([b"\r\n"] * 8 + [b"\r", b"\n", b"\r\r\n", b"\n\r", b"\r\n\r\n", b""]),
    ),
    max_size=10,
)


@settings(max_examples=3000, deadline=None)
@given(BLOCK_LINES, st.sampled_from([True] * 4 + [False]), st.sampled_from([True] * 4 + [False]))
def test_a_header_block_is_read_at_once_exactly_when_all_of_it_is_plain(
    lines: list[tuple[bytes, bytes]], start: bool, end: bool
) -> None:
    """`_parse_headers` reads at once exactly the blocks whose every line is plain (as
    `PLAIN_BLOCK` told before): CRs and LFs alone, empty lines, a plain line after an odd
    one or inside one, a block without its first line or its last, or only those; and reads
    each as line by line reading and nats-py do."""
    block = b"".join([b"NATS/1.0\r\n"] * start + [b"".join(pair) for pair in lines])
    block += b"\r\n" * end
    assert read_at_once(block) == bool(PLAIN_BLOCK.fullmatch(block))
    assert _parse_headers(block) == _parse_header_lines(block)
    if block.startswith(b"NATS/1.0\r\n"):  # nats-py's parser is handed only such blocks
        theirs = asyncio.run(Client()._process_headers(block)) or {}
        theirs.pop("Status", None)
        theirs.pop("Description", None)
        assert _parse_headers(block) == theirs


@pytest.mark.parametrize(
    "block",
    [
        b"NATS/1.0\r\n\r\n",
        b"NATS/1.0\r\na: b\r\n\r\n",
        b"NATS/1.0\r\na: b\r\n\r\nc: d\r\n\r\n",  # an empty line among the lines
        b"NATS/1.0\r\nBad Name: x\r\n\r\n",  # a plain line's end inside it
        b"NATS/1.0\r\nx\na: b\r\n\r\n",  # a plain line after an LF alone
        b"NATS/1.0\r\nx\ra: b\r\n\r\n",
        b"NATS/1.0\r\na: b\r\r\n\r\n",
        b"NATS/1.0\r\na: b\r\n\r\n\r\n",
        b"NATS/1.0\r\na: b\r\n",
        b"NATS/1.0\r\na: b\r\n\n",
        b"NATS/1.0 503\r\na: b\r\n\r\n",
        b"NATS/1.0\r\n\xc3\xa9: b\r\na: b\r\n\r\n",
    ],
)
def test_a_header_block_that_is_nearly_plain_is_read_line_by_line(block: bytes) -> None:
    assert read_at_once(block) == bool(PLAIN_BLOCK.fullmatch(block))
    assert _parse_headers(block) == _parse_header_lines(block)


def test_a_commands_header_block_is_read_as_a_plain_one() -> None:
    block = b"NATS/1.0\r\nce-id: cmd-1\r\nce-type: uftp.x\r\nNats-Msg-Id: m 1\r\n\r\n"
    assert read_at_once(block)
    assert _parse_headers(block) == {"ce-id": "cmd-1", "ce-type": "uftp.x", "Nats-Msg-Id": "m 1"}


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.T_COMMANDS.uftp-adapter.3.1042.17.1733550000000000000.5",
        "$JS.ACK._.ACCOUNTHASH.T_COMMANDS.uftp-adapter.2.99.98.1733550000000000000.0.x1",
        "$JS.ACK.hub.ACCOUNTHASH.T_COMMANDS.uftp-adapter.1.7.7.1733550000000000000.0",
    ],
)
def test_an_ack_subject_is_read_as_nats_py_reads_it(reply: str) -> None:
    metadata = Msg.Metadata._from_reply(reply)
    expected = (metadata.stream, metadata.sequence.stream, metadata.num_delivered)
    assert _ack_metadata(reply) == expected


@pytest.mark.parametrize(
    "reply",
    ["", "_INBOX.abc", "$JS.ACK.S.C.1.2.3", "$JS.ACK.S.C.x.2.3.4.5", "$JS.NAK.S.C.1.2.3.4.5"],
)
def test_what_is_no_ack_subject_is_refused(reply: str) -> None:
    with pytest.raises(ValueError):
        _ack_metadata(reply)


async def test_strays_on_the_commands_inbox_are_bounded(broker: NatsBroker) -> None:
    """Whoever may publish to the bus's inbox cannot make it keep more than a pull request
    brings and a margin of messages."""
    bus = broker.bus(batch=4)
    await bus.connect()
    assert bus._raw
    gate = asyncio.Event()
    handler = Recorder(gate=gate)
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers("cmd-held"))
    await eventually(lambda: len(handler.commands) == 1, "a command in hand")
    assert bus._inbox is not None
    limit = bus.batch + adapter.bus.nats._MAX_STRAY
    for index in range(limit + 50):
        await broker.client.publish(bus._inbox.subject, b"stray", reply=f"r.{index}")
    await broker.client.flush()
    await eventually(lambda: len(bus._arrived) >= limit, "the strays taken in")
    await asyncio.sleep(0.2)
    assert len(bus._arrived) == limit
    gate.set()
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the command acked")


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def _exists(js: Any, stream: str) -> bool:
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return False
    return True


# -- a nats-py whose internals differ -------------------------------------------------------


class _TupleCaller:
    """What nats-py's parser calls on a client, as a nats-py would whose parser hands a
    message to ``_process_msg`` as one tuple (everything else as it is)."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nc, name)

    async def _process_msg(self, *message: Any) -> None:
        await self._nc._process_msg(message)  # type: ignore[call-arg]


def change_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """nats-py as if a release had changed ``Client._process_msg`` (what `RawClient`
    overrides) and its parser's call of it: one tuple for the five arguments."""
    original = Client._process_msg

    async def process_msg(self: Client, message: Any, *made_before: Any) -> None:
        # Clients made before the change (the test's broker side) call it as before.
        await original(self, *((message, *made_before) if made_before else message))

    parser_init = nats.protocol.parser.Parser.__init__

    def init(self: nats.protocol.parser.Parser, nc: Client) -> None:
        parser_init(self, nc)
        self.nc = _TupleCaller(nc)

    monkeypatch.setattr(Client, "_process_msg", process_msg)
    monkeypatch.setattr(nats.protocol.parser.Parser, "__init__", init)


async def carries_commands_and_events(broker: NatsBroker, bus: NatsBus, name: str) -> None:
    """`bus` (on nats-py's own dispatch) hands a command over and acks it, and gets an
    event's PubAck back."""
    handler = Recorder()
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers(f"cmd-{name}"))
    await eventually(lambda: len(handler.commands) == 1, "the command handed over")
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the ack")
    await bus.publish(event(f"ev-{name}"), "outcome")  # its PubAck came back
    assert (await broker.event("outcome")).data == event(f"ev-{name}").data


async def test_a_changed_dispatch_in_nats_py_leaves_the_bus_on_nats_pys_own(
    broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``_process_msg`` is not what `RawClient` overrides, the connection is a plain
    nats-py client: an override called in a shape it does not know would end nats-py's read
    loop (every subscription deaf until the server's pings go unanswered)."""
    change_dispatch(monkeypatch)
    bus = broker.bus()
    await bus.connect()
    assert not bus._raw
    assert not isinstance(bus._nc, RawClient)
    await carries_commands_and_events(broker, bus, "changed")


class _Unnumbered:
    """A subscription of a nats-py that keeps its id under another name than ``_id``."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    def __getattr__(self, name: str) -> Any:
        if name == "_id":
            raise AttributeError(name)
        return getattr(self._subscription, name)


async def test_a_subscription_without_the_id_expected_leaves_the_bus_on_nats_pys_dispatch(
    broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribe = Client.subscribe

    async def unnumbered(self: Client, subject: str, **options: Any) -> Any:
        return _Unnumbered(await subscribe(self, subject, **options))

    monkeypatch.setattr(Client, "subscribe", unnumbered)
    bus = broker.bus()
    await bus.connect()
    assert not bus._raw
    await carries_commands_and_events(broker, bus, "unnumbered")


async def test_a_parser_that_no_longer_dispatches_through_process_msg_is_noticed(
    broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nats-py whose parser hands messages to its subscriptions by another way than
    ``_process_msg``: the probe at connect finds the raw taker never called. (Where the
    socket is read by `SocketIntake`, nats-py's parser is not used: here it is, as on a
    connection that intake does not take.)"""
    monkeypatch.setattr(adapter.bus.nats, "take_socket", lambda *_: None)

    class Elsewhere(_TupleCaller):
        async def _process_msg(self, *message: Any) -> None:
            await Client._process_msg(self._nc, *message)  # past any override

    parser_init = nats.protocol.parser.Parser.__init__

    def init(self: nats.protocol.parser.Parser, nc: Client) -> None:
        parser_init(self, nc)
        self.nc = Elsewhere(nc)

    monkeypatch.setattr(nats.protocol.parser.Parser, "__init__", init)
    await connects_promptly_on_nats_pys_dispatch(broker, "elsewhere")


async def connects_promptly_on_nats_pys_dispatch(broker: NatsBroker, name: str) -> NatsBus:
    """A bus with a long `timeout` connects at once all the same, its probe unanswered: the
    fallback is decided by round trips to the server, not by waiting out the timeout; the
    bus then carries commands and events on nats-py's dispatch."""
    bus = broker.bus(timeout=20)
    started = time.monotonic()
    await bus.connect()
    took = time.monotonic() - started
    assert not bus._raw
    assert took < 3, f"connect took {took:.1f} s"  # before: the 20 s of the timeout
    await carries_commands_and_events(broker, bus, name)
    return bus


def test_the_raw_client_is_chosen_only_for_the_dispatch_it_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert adapter.bus.nats._dispatches_raw(Client)
    assert adapter.bus.nats._reads_raw(Client)
    original = Client._process_msg

    def synchronous(
        self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        pass

    monkeypatch.setattr(Client, "_process_msg", synchronous)
    assert not adapter.bus.nats._dispatches_raw(Client)

    async def more(
        self: Client,
        sid: int,
        subject: bytes,
        reply: bytes,
        data: bytes,
        headers: bytes | None,
        extra: int,
    ) -> None:
        pass

    monkeypatch.setattr(Client, "_process_msg", more)
    assert not adapter.bus.nats._dispatches_raw(Client)
    monkeypatch.setattr(Client, "_process_msg", original)
    assert adapter.bus.nats._dispatches_raw(Client)


async def test_stray_bytes_on_the_commands_inbox_are_bounded(
    broker: NatsBroker, intake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nor more than a margin of bytes beyond what a pull request brings: a message may be as
    large as the server's max_payload, far fewer than the margin of messages fill the
    memory. (The bound made small here; the strays 32 KiB each.)"""
    bound = 256 * 1024
    monkeypatch.setattr(adapter.bus.nats, "_MAX_STRAY_BYTES", bound)
    bus = broker.bus(batch=4)
    await bus.connect()
    assert bus._raw is (intake == "raw")
    gate = asyncio.Event()
    handler = Recorder(gate=gate)
    await bus.consume(handler)
    await broker.send_command(b"<x/>", command_headers("cmd-held"))
    await eventually(lambda: len(handler.commands) == 1, "a command in hand")
    assert bus._inbox is not None
    stray = b"s" * (32 * 1024)
    for index in range(40):
        await broker.client.publish(bus._inbox.subject, stray, reply=f"r.{index}")
    await broker.client.flush()
    await eventually(lambda: bus._arrived_bytes >= bound - len(stray), "the strays taken in")
    await asyncio.sleep(0.2)
    assert bus.batch < len(bus._arrived) <= bound // len(stray)
    assert bus._arrived_bytes == sum(len(d.data) for d in bus._arrived) <= bound
    gate.set()
    await eventually(lambda: _is(broker.count("commands_stream"), 0), "the command acked")


async def test_the_raw_intake_is_kept_when_its_probe_is_not_back_within_the_wait(
    broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe at connect decides by round trips to the server, not by its short wait:
    with no wait at all (as on a machine too busy to read the probe within it) the raw intake
    that works is still chosen. Even with the probe left in nats-py's buffer until the first
    ping is answered (as when its flusher does not get its turn before): on the wire the
    first ping, its pong, the probe, the second ping. Then only the second round trip proves
    the probe delivered; one alone would fall back for nothing."""
    monkeypatch.setattr(adapter.bus.nats, "_PROBE_WAIT", 0.0)
    publish = Client.publish
    send_ping = Client._send_ping
    written_late = 0

    async def probe_written_late(self: Client, subject: str, *args: Any, **kwargs: Any) -> None:
        if subject != bus._ack_prefix + "0":
            await publish(self, subject, *args, **kwargs)
            return
        held: list[bytes] = []

        async def hold(command: bytes, priority: bool = False) -> None:
            held.append(command)

        async def ping_then_probe(future: asyncio.Future[Any] | None = None) -> None:
            nonlocal written_late
            del self._send_ping
            assert future is not None  # flush's
            await send_ping(self, future)
            await future
            written_late += 1
            (command,) = held
            await self._send_command(command)
            await self._flush_pending()

        self._send_command = hold  # type: ignore[method-assign]
        try:
            await publish(self, subject, *args, **kwargs)
        finally:
            del self._send_command
        self._send_ping = ping_then_probe  # type: ignore[method-assign]

    monkeypatch.setattr(Client, "publish", probe_written_late)
    for connects in range(1, 6):
        bus = broker.bus()
        await bus.connect()
        assert written_late == connects
        assert bus._raw
        await bus.close()


@pytest.fixture
def inboxes_closed_server(tmp_path: Path) -> Iterator[OwnServer]:
    """A nats-server of the test's own whose only user (bus:bus) may not publish to the
    inboxes (``_INBOX.>``), as an account may be set up: the answers of the server and of
    JetStream still reach its inboxes."""
    config = tmp_path / "nats.conf"
    config.write_text(
        'authorization { users = [ { user: "bus", password: "bus",'
        ' permissions: { publish: { deny: ["_INBOX.>"] } } } ] }\n'
    )
    yield from running(OwnServer(tmp_path / "jetstream", config))


async def test_a_probe_the_server_refuses_is_said_to_be_refused(
    inboxes_closed_server: OwnServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the account may not publish to the PubAck inbox the probe at connect is
    refused, which says nothing of nats-py's dispatch: the fallback's warning says what the
    server refused, not that nats-py's dispatch is not the one expected. The bus works on
    nats-py's dispatch."""
    url = f"nats://bus:bus@127.0.0.1:{inboxes_closed_server.port}"
    client = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    broker = NatsBroker(url, client)
    try:
        bus = broker.bus()
        await bus.connect()
        assert not bus._raw
        refused = [r.getMessage() for r in caplog.records if "probe was refused" in r.getMessage()]
        assert len(refused) == 1, caplog.text
        assert "permissions violation for publish" in refused[0]
        assert bus._ack_prefix.lower() + "0" in refused[0]
        assert "dispatch is not the one expected" not in caplog.text
        await carries_commands_and_events(broker, bus, "refused")
    finally:
        await broker.cleanup()
        await client.close()


async def test_a_connect_that_fails_unexpectedly_leaves_nothing_half_set_up(
    broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever fails in `connect` (here: the raw setup, once), the connection is closed and
    forgotten, so that the next `connect` starts over instead of returning at once."""
    calls = 0
    take_raw = RawClient.take_raw

    def failing_once(self: RawClient, subscription: Subscription, taker: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a fault of the raw setup")
        return take_raw(self, subscription, taker)

    monkeypatch.setattr(RawClient, "take_raw", failing_once)
    bus = broker.bus()
    with pytest.raises(RuntimeError):
        await bus.connect()
    assert bus._nc is None and bus._acks is None
    await bus.connect()
    assert bus._raw and bus._acks is not None
    await bus.publish(event("ev-again"), "outcome")
    assert (await broker.event("outcome")).data == event("ev-again").data


async def test_a_raw_client_called_in_a_shape_it_does_not_know_hands_it_to_nats_py(
    broker: NatsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a `RawClient` still be made over a changed dispatch, it passes what it does
    not know to nats-py as it came (the read loop goes on), and the probe at connect finds
    its takers never called. (On a connection nats-py's parser reads: `SocketIntake` does
    not use it.)"""
    change_dispatch(monkeypatch)
    monkeypatch.setattr(adapter.bus.nats, "_dispatches_raw", lambda client: True)
    monkeypatch.setattr(adapter.bus.nats, "take_socket", lambda *_: None)
    bus = await connects_promptly_on_nats_pys_dispatch(broker, "shape")
    assert isinstance(bus._nc, RawClient)
    assert bus._nc.is_connected


def test_a_read_loop_of_another_shape_is_left_to_nats_py(monkeypatch: pytest.MonkeyPatch) -> None:
    """`SocketIntake` takes the place of ``Client._read_loop`` only where it is nats-py
    2.x's coroutine without parameters."""

    async def with_parameter(self: Client, size: int) -> None:
        del self, size

    def not_a_coroutine(self: Client) -> None:
        del self

    for changed in (with_parameter, not_a_coroutine):
        monkeypatch.setattr(Client, "_read_loop", changed)
        assert not adapter.bus.nats._reads_raw(Client)
