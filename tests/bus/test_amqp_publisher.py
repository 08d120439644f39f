"""The events' own AMQP publisher (`adapter.bus.amqp`): its frames are pamqp's, byte for
byte, and against the real broker it keeps the port's guarantees: an ack returns, a
Basic.Return is `Unroutable`, a nack, a closed channel, a lost connection or a missing
confirm are `BusUnavailable`, and the next publication opens the connection again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aio_pika
import pamqp.encode
import pamqp.frame
import pytest
from pamqp import body as pamqp_body
from pamqp import commands as spec
from pamqp import header as pamqp_header

from adapter.bus.amqp import ConfirmPublisher, encode_publication
from adapter.bus.events import CloudEvent, to_amqp
from adapter.bus.port import BusUnavailable, Unroutable
from adapter.bus.rabbitmq import (
    RabbitBus,
    Topology,
    event_properties,
    properties_of,
    string_table,
)
from adapter.uftp.messages import Role
from tests.bus.conftest import AMQP_URL
from tests.bus.test_rabbitmq import event, journal_event
from tests.bus.tools import close_connections
from tests.conftest import eventually

# -- the encoding ----------------------------------------------------------------------------


def pamqp_publication(
    exchange: str, route: str, properties: spec.Basic.Properties, body: bytes, frame_max: int
) -> bytes:
    """What aiormq writes for the same publication: pamqp's frames, the body split as aiormq
    splits it (frames of `frame_max` - 8 octets)."""
    frames: list[Any] = [
        spec.Basic.Publish(exchange=exchange, routing_key=route, mandatory=True),
        pamqp_header.ContentHeader(0, len(body), properties),
    ]
    step = frame_max - 8
    frames += [pamqp_body.ContentBody(body[i : i + step]) for i in range(0, len(body), step)]
    return b"".join(pamqp.frame.marshal(frame, 1) for frame in frames)


def test_a_publication_is_encoded_as_pamqp_encodes_its_frames() -> None:
    properties = spec.Basic.Properties(
        headers={"cloudEvents_id": "e-\u20ac"}, delivery_mode=2, message_id="e-1"
    )
    frame_max = 4096
    step = frame_max - 8
    for size in (0, 1, 100, step - 1, step, step + 1, 3 * step, 3 * step + 17):
        body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        for exchange, route in (("uftp.events", "in.TestMessage"), ("", "r\u00e9sultat.\u20ac")):
            ours = encode_publication(
                1, exchange.encode(), route, properties.marshal(), body, frame_max
            )
            assert ours == pamqp_publication(exchange, route, properties, body, frame_max), (
                size,
                exchange,
                route,
            )
    with pytest.raises(ValueError, match="255"):
        encode_publication(1, b"x", "r" * 256, properties.marshal(), b"", frame_max)


def test_the_publish_frame_kept_per_routing_key_is_that_of_its_publication() -> None:
    # `encode_publication` keeps the Basic.Publish frame per routing key (`_publish_frame`):
    # the same key on another channel or exchange, or not mandatory, is not that frame.
    properties = spec.Basic.Properties(message_id="e-1")
    for channel, exchange, mandatory in (
        (1, "uftp.events", True),
        (1, "other", True),
        (1, "uftp.events", False),
        (2, "uftp.events", True),
        (1, "uftp.events", True),
    ):
        frames: list[Any] = [
            spec.Basic.Publish(exchange=exchange, routing_key="in.X", mandatory=mandatory),
            pamqp_header.ContentHeader(0, 1, properties),
            pamqp_body.ContentBody(b"x"),
        ]
        encoded = properties.marshal()
        ours = encode_publication(
            channel, exchange.encode(), "in.X", encoded, b"x", 4096, mandatory=mandatory
        )
        assert ours == b"".join(pamqp.frame.marshal(f, channel) for f in frames)
    for _ in range(2):  # refused each time, not kept
        with pytest.raises(ValueError, match="255"):
            encode_publication(1, b"x", "r" * 256, properties.marshal(), b"", 4096)


def test_the_header_table_kept_per_set_of_keys_takes_no_value_from_another_table() -> None:
    # `string_table` keeps the names' part of a table per set of keys (`_layout`): a table
    # with the same keys and other values, in another order, or with a value of another kind,
    # is encoded as pamqp encodes it, whatever table of those keys came before.
    first = {"cloudEvents_type": "uftp.TestMessage", "cloudEvents_id": "e-1", "x": "\u20ac"}
    for table in (
        first,
        {**first, "cloudEvents_id": "e-2, longer", "x": ""},
        dict(reversed(first.items())),
        {**first, "x": "\U0001f600" * 70},
        first,
    ):
        assert string_table(table) == pamqp.encode.field_table(table), table
    # The same keys with a value that is not a `str`: left to pamqp, and those after it not.
    assert string_table({**first, "x": 1}) is None
    assert string_table({**first, "x": Role.CRO}) is None  # a StrEnum
    assert string_table(first) == pamqp.encode.field_table(first)
    for _ in range(2):
        assert string_table({"n" * 129: "a name pamqp truncates"}) is None
    # The same keys with a prefix and one left out, then without: each its own table.
    attributes = {"type": "t", "id": "e-1", "datacontenttype": "text/xml"}
    prefixed = {"cloudEvents_type": "t", "cloudEvents_id": "e-1"}
    for _ in range(2):
        assert string_table(
            attributes, prefix="cloudEvents_", leave_out="datacontenttype"
        ) == pamqp.encode.field_table(prefixed)
        assert string_table(attributes) == pamqp.encode.field_table(attributes)


def test_event_properties_are_encoded_as_pamqp_encodes_them() -> None:
    headers, content_type = to_amqp(journal_event())
    time = datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
    base: dict[str, Any] = {
        "headers": headers,
        "content_type": content_type,
        "message_id": "e-\u20ac",
        "timestamp": time,
        "message_type": "uftp.TestMessage",
        "app_id": "uftp-adapter cro.example.com",
    }
    cases = [
        base,
        {**base, "timestamp": time.astimezone(timezone(timedelta(hours=-5)))},
        {**base, "content_type": "", "message_id": "", "message_type": "", "app_id": ""},
        {**base, "headers": {}},
        {**base, "app_id": "a" * 255},
        # Left to pamqp's encoder (through aiormq's properties), to the same bytes:
        {**base, "headers": {**headers, "x-count": 1}},
        {**base, "headers": {"n" * 129: "a name pamqp truncates"}},
    ]
    for values in cases:
        expected = spec.Basic.Properties(delivery_mode=2, **values).marshal()
        assert event_properties(**values) == expected, values
    # What pamqp refuses is refused as it refuses it.
    for values in ({**base, "app_id": "a" * 256}, {**base, "timestamp": time.replace(tzinfo=None)}):
        try:
            expected = spec.Basic.Properties(delivery_mode=2, **values).marshal()
        except TypeError:
            with pytest.raises(TypeError):
                event_properties(**values)
        else:
            assert event_properties(**values) == expected


def test_an_events_properties_are_those_of_its_amqp_headers() -> None:
    # `properties_of` encodes the headers' table from the attributes, without making the
    # headers (to_amqp): the same bytes as event_properties of those headers, for an event
    # as the journal makes it, one with values beyond ASCII and one whose extension sorts
    # first; what pamqp refuses (a content type too long) it refuses alike.
    made = journal_event()
    for sent in (
        made,
        made.extended("commandid", "cmd-\u20ac\U0001f600"),
        made.extended("a0", "sorts first"),
    ):
        headers, content_type = to_amqp(sent)
        expected = event_properties(
            headers, content_type, sent.id, sent.time, sent.type, "uftp-adapter cro"
        )
        assert properties_of(sent, "uftp-adapter cro") == expected, sent
        assert string_table(
            sent.attributes(), prefix="cloudEvents_", leave_out="datacontenttype"
        ) == string_table(headers)
    refused = CloudEvent(
        made.id, made.source, made.type, made.time, "text/xml; " + "x" * 300, made.data
    )
    with pytest.raises(TypeError, match="255"):
        properties_of(refused, "uftp-adapter cro")


# -- against the broker ----------------------------------------------------------------------


@pytest.fixture
async def exchange(amqp: Any) -> AsyncIterator[str]:
    """An events exchange of this test alone."""
    name = f"test.publisher.{uuid.uuid4().hex[:10]}"
    channel = await amqp.channel()
    await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    try:
        yield name
    finally:
        await channel.exchange_delete(name)
        await channel.close()


async def queue_on(amqp: Any, exchange: str, pattern: str, **arguments: Any) -> Any:
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True, arguments=arguments or None)
    await queue.bind(exchange, pattern)
    return queue


async def open_publisher(exchange: str, timeout: float = 5.0, url: str = AMQP_URL) -> Any:
    return await ConfirmPublisher.open(url, exchange, name=f"test {exchange}", timeout=timeout)


def properties(message_id: str) -> bytes:
    return spec.Basic.Properties(delivery_mode=2, message_id=message_id).marshal()


async def test_concurrent_publications_are_each_confirmed_or_returned(
    amqp: Any, exchange: str
) -> None:
    """Many publications in flight: the broker acks several at once (``multiple``) and
    returns the unroutable ones in between; each caller learns its own outcome."""
    queue = await queue_on(amqp, exchange, "in.#")
    publisher = await open_publisher(exchange)
    try:
        routes = [("in.x" if n % 3 else "outcome.x", n) for n in range(300)]
        results = await asyncio.gather(
            *(
                publisher.publish(route, properties(f"m-{n}"), b"%d" % n, f"m-{n}")
                for route, n in routes
            ),
            return_exceptions=True,
        )
        for (route, n), result in zip(routes, results, strict=True):
            if route == "outcome.x":
                assert isinstance(result, Unroutable) and result.route == route, (n, result)
                assert "NO_ROUTE" in str(result)
            else:
                assert result is None, (n, result)
        received = set()
        while (message := await queue.get(timeout=5, fail=False)) is not None:
            received.add(message.body)
            await message.ack()
        assert received == {b"%d" % n for route, n in routes if route == "in.x"}
        # A large body, in several frames of the negotiated size.
        big = bytes(range(256)) * 2000
        await publisher.publish("in.big", properties("big"), big, "big")
        message = await queue.get(timeout=5)
        assert message.body == big and message.message_id == "big"
        await message.ack()
    finally:
        await publisher.close()
    assert publisher.is_closed
    with pytest.raises(BusUnavailable):
        await publisher.publish("in.x", properties("late"), b"", "late")


async def test_a_nack_is_bus_unavailable(amqp: Any, exchange: str) -> None:
    """A queue that is full and rejects publications makes the broker nack them."""
    await queue_on(amqp, exchange, "in.#", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    publisher = await open_publisher(exchange)
    try:
        await publisher.publish("in.x", properties("m-1"), b"first", "m-1")
        with pytest.raises(BusUnavailable, match="nack"):
            await publisher.publish("in.x", properties("m-2"), b"second", "m-2")
        assert not publisher.is_closed  # a nack leaves the channel as it was
    finally:
        await publisher.close()


async def test_a_channel_the_broker_closes_is_bus_unavailable() -> None:
    """Publishing to an exchange that does not exist: the broker closes the channel (404)."""
    publisher = await open_publisher(f"test.publisher.missing.{uuid.uuid4().hex[:10]}")
    try:
        with pytest.raises(BusUnavailable, match="404"):
            await publisher.publish("in.x", properties("m-1"), b"", "m-1")
        assert publisher.is_closed
    finally:
        await publisher.close()


async def test_wrong_credentials_are_bus_unavailable(exchange: str) -> None:
    url = AMQP_URL.replace("guest:guest@", "guest:wrong@")
    with pytest.raises(BusUnavailable, match="403"):
        await open_publisher(exchange, url=url)


async def test_heartbeats_keep_an_idle_connection_open(amqp: Any, exchange: str) -> None:
    """With a heartbeat of 1 s the broker drops a client silent for 2 s: ours speaks."""
    queue = await queue_on(amqp, exchange, "in.#")
    separator = "&" if "?" in AMQP_URL else "?"
    publisher = await open_publisher(exchange, url=f"{AMQP_URL}{separator}heartbeat=1")
    try:
        assert publisher.heartbeat == 1
        await asyncio.sleep(3.5)
        assert not publisher.is_closed
        await publisher.publish("in.x", properties("after-idle"), b"still here", "after-idle")
        assert (await queue.get(timeout=5)).body == b"still here"
    finally:
        await publisher.close()


class FreezingProxy:
    """A TCP proxy to the broker that can stop passing what the broker sends (a stalled
    network path): what the client writes still reaches the broker."""

    def __init__(self) -> None:
        self.frozen = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = AMQP_URL.rsplit("@", 1)[-1].strip("/").partition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port or 5672))
        self._writers += (writer, up_writer)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, downstream: bool
        ) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    if downstream and self.frozen.is_set():
                        continue
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def url(self) -> str:
        return AMQP_URL.replace(AMQP_URL.rsplit("@", 1)[-1].strip("/"), f"127.0.0.1:{self.port}")

    async def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_confirm_that_does_not_come_is_bus_unavailable_in_time(
    amqp: Any, exchange: str
) -> None:
    await queue_on(amqp, exchange, "in.#")
    proxy = FreezingProxy()
    await proxy.start()
    publisher = await open_publisher(exchange, timeout=0.5, url=proxy.url())
    try:
        await publisher.publish("in.x", properties("m-1"), b"", "m-1")
        proxy.frozen.set()
        started = asyncio.get_running_loop().time()
        with pytest.raises(BusUnavailable, match="no confirm"):
            await publisher.publish("in.x", properties("m-2"), b"", "m-2")
        assert asyncio.get_running_loop().time() - started < 2.0
    finally:
        await publisher.close()
        await proxy.stop()


async def test_the_port_opens_the_events_connection_again_after_it_was_closed(
    amqp: Any, topology: Topology
) -> None:
    """The broker closes the events connection (as an operator would): what awaited a
    confirm gets BusUnavailable, the next publication opens it again, and the robust
    connection of the topology and the consumer is not disturbed."""
    queue_channel = await amqp.channel()
    name = f"test-publisher-{uuid.uuid4().hex[:8]}"
    bus = RabbitBus(AMQP_URL, topology, name=name, publish_timeout=5)
    await bus.connect()
    try:
        queue = await queue_channel.declare_queue(exclusive=True)
        await queue.bind(topology.events_exchange, "#")
        await bus.publish(event(1), "in.X")
        in_flight = [asyncio.ensure_future(bus.publish(event(n), "in.X")) for n in range(2, 200)]
        assert await close_connections(f"{name} events") == 1
        outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(o is None or isinstance(o, BusUnavailable) for o in outcomes), outcomes

        async def published_again() -> bool:
            try:
                await bus.publish(event(1000), "in.X")
            except BusUnavailable:
                return False
            return True

        await eventually(published_again, timeout=10)
        assert bus.publisher_reopens == 1
        assert bus.reconnects == 0 and bus.health().connected
        ids = set()
        while (message := await queue.get(timeout=5, fail=False)) is not None:
            ids.add(message.message_id)
            await message.ack()
        confirmed = {f"e-{n}" for n, o in zip(range(2, 200), outcomes, strict=True) if o is None}
        assert {"e-1", "e-1000"} | confirmed <= ids  # nothing confirmed is missing
    finally:
        await bus.close()
        await queue_channel.close()


async def test_a_broker_that_blocks_publishers_is_bus_unavailable_at_once(
    tmp_path: Any,
) -> None:
    """A memory alarm (set on a node of the test's own, never the shared one): the broker
    stops reading from publishers and says so (Connection.Blocked); publications fail at once
    rather than pile up unread, `health` says why, and they go through again once it is
    cleared."""
    from tests.bus.tools import PrivateRabbit

    PrivateRabbit.require()
    node = PrivateRabbit(tmp_path / "rabbit")
    await node.start()
    try:
        operator = await aio_pika.connect(node.url, timeout=10)
        channel = await operator.channel()
        bus = RabbitBus(node.url, Topology(events_exchange="blocked.events"), publish_timeout=2)
        await bus.connect()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("blocked.events", "#")
        try:
            await bus.publish(event(1), "in.x")
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0")
            # The first publication after the alarm is what makes the broker block us.
            with contextlib.suppress(BusUnavailable):
                await bus.publish(event(2), "in.x")
            await eventually(lambda: "blocks publishing" in bus.health().detail, timeout=10)
            started = asyncio.get_running_loop().time()
            with pytest.raises(BusUnavailable, match="blocks publishing"):
                await bus.publish(event(3), "in.x")
            assert asyncio.get_running_loop().time() - started < 0.5
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.4")
            await eventually(lambda: "blocks" not in bus.health().detail, timeout=10)
            await bus.publish(event(4), "in.x")
            assert bus.publisher_reopens == 0
        finally:
            await bus.close()
            await operator.close()
    finally:
        await asyncio.to_thread(node.kill)


async def test_frames_split_anywhere_by_the_network_are_read_whole(
    amqp: Any, exchange: str
) -> None:
    """What the broker sends, handed to the reader one octet at a time (as TCP may split
    it): every ack and every return is still read, each at its frame's end."""
    await queue_on(amqp, exchange, "in.#")
    publisher = await open_publisher(exchange)
    whole = publisher.data_received

    def in_octets(data: bytes) -> None:
        for n in range(len(data)):
            whole(data[n : n + 1])

    publisher.data_received = in_octets  # type: ignore[method-assign]
    try:
        routes = ["in.x" if n % 2 else "outcome.x" for n in range(50)]
        results = await asyncio.gather(
            *(
                publisher.publish(route, properties(f"m-{n}"), b"%d" % n, f"m-{n}")
                for n, route in enumerate(routes)
            ),
            return_exceptions=True,
        )
        assert [type(r).__name__ for r in results] == [
            "NoneType" if route == "in.x" else "Unroutable" for route in routes
        ]
    finally:
        await publisher.close()


async def test_a_frame_beyond_the_agreed_size_drops_the_connection(exchange: str) -> None:
    publisher = await open_publisher(exchange)
    try:
        # A header announcing more than frame_max octets: read no further, wait for nothing.
        publisher.data_received(b"\x01\x00\x01" + (publisher.frame_max + 1).to_bytes(4, "big"))
        assert publisher.is_closed
        with pytest.raises(BusUnavailable):
            await publisher.publish("in.x", properties("m"), b"", "m")
    finally:
        await publisher.close()


async def test_publications_waiting_for_the_events_connection_share_one_attempt(
    topology: Topology,
) -> None:
    """The broker's address answers TCP and then nothing (a broker hung, a half-dead
    path): the publications that find the events connection lost wait for one attempt to
    open it, bounded by the publish timeout, not for one attempt each after the other."""
    from tests.bus.tools import Proxy

    proxy = Proxy(int(AMQP_URL.rsplit(":", 1)[-1].strip("/") or 5672))
    await proxy.start()
    url = AMQP_URL.replace(AMQP_URL.rsplit("@", 1)[-1].strip("/"), f"127.0.0.1:{proxy.port}")
    # aio-pika's connection tries again only after a minute, once its first try timed out.
    bus = RabbitBus(url, topology, publish_timeout=1.0, reconnect_interval=60)
    await bus.connect()
    accepted = 0
    silent: list[asyncio.StreamWriter] = []

    async def hang(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        silent.append(writer)

    with contextlib.suppress(Unroutable):  # nothing is bound: it is confirmed all the same
        await bus.publish(event(1), "in.X")
    await proxy.cut()
    hole = await asyncio.start_server(hang, "127.0.0.1", proxy.port)
    try:
        # aio-pika's connection tries once at once, and hangs there as long as its timeout.
        for _ in range(40):
            if accepted:
                break
            await asyncio.sleep(0.05)
        theirs = accepted
        started = asyncio.get_running_loop().time()
        outcomes = await asyncio.gather(
            *(bus.publish(event(n), "in.X") for n in range(2, 12)), return_exceptions=True
        )
        took = asyncio.get_running_loop().time() - started
        assert all(isinstance(o, BusUnavailable) for o in outcomes), outcomes
        assert accepted - theirs == 1, (accepted, theirs)
        assert took < 3.0, took
    finally:
        for writer in silent:
            writer.transport.abort()
        hole.close()
        await hole.wait_closed()
        await bus.close()


async def test_the_events_connection_speaks_tls_as_aio_pika_does(tmp_path: Any) -> None:
    """``amqps://`` with aiormq's query options (cafile, certfile, keyfile), on a node of
    the test's own with a TLS listener that requires a client certificate: both connections
    of the port open with the same URL and an event is confirmed; a CA that did not sign
    the broker's certificate, or no client certificate, is BusUnavailable."""
    from tests.bus.tools import PrivateRabbit, free_port
    from tests.certs import make_pki

    PrivateRabbit.require()
    pki = make_pki(tmp_path / "pki")
    node = PrivateRabbit(tmp_path / "rabbit")
    tls_port = free_port()
    with (node.root / "rabbitmq.conf").open("a") as conf:
        conf.write(
            f"listeners.ssl.default = {tls_port}\n"
            f"ssl_options.cacertfile = {pki.ca}\n"
            f"ssl_options.certfile = {pki.server_certificate}\n"
            f"ssl_options.keyfile = {pki.server_key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "auth_mechanisms.1 = PLAIN\n"
            "auth_mechanisms.2 = EXTERNAL\n"
            "ssl_cert_login_from = common_name\n"
        )
    (node.root / "enabled_plugins").write_text("[rabbitmq_auth_mechanism_ssl].\n")
    await node.start()
    base = f"amqps://guest:guest@127.0.0.1:{tls_port}/"
    client = f"certfile={pki.client_certificate}&keyfile={pki.client_key}"
    url = f"{base}?cafile={pki.ca}&{client}"
    try:
        operator = await aio_pika.connect(node.url, timeout=10)
        channel = await operator.channel()
        topology = Topology(events_exchange="tls.events")
        bus = RabbitBus(url, topology, publish_timeout=5)
        await bus.connect()
        try:
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind("tls.events", "#")
            await bus.publish(event(1), "in.X")
            assert (await queue.get(timeout=5)).message_id == "e-1"
        finally:
            await bus.close()
        for wrong in (f"{base}?cafile={pki.other_ca}&{client}", f"{base}?cafile={pki.ca}"):
            with pytest.raises(BusUnavailable):
                await open_publisher("tls.events", url=wrong)
        # ``auth=external``: the client certificate's common name is the user.
        with pytest.raises(BusUnavailable, match="403"):
            await open_publisher("tls.events", url=f"{url}&auth=external")  # no such user yet
        user = "dso.example-grid.nl"
        await asyncio.to_thread(node.ctl, "add_user", user, uuid.uuid4().hex)
        await asyncio.to_thread(node.ctl, "set_permissions", "-p", "/", user, ".*", ".*", ".*")
        bus = RabbitBus(f"{url}&auth=external", topology, publish_timeout=5)
        await bus.connect()
        try:
            await bus.publish(event(2), "in.X")
            assert (await queue.get(timeout=5)).message_id == "e-2"
        finally:
            await bus.close()
        with pytest.raises(BusUnavailable, match="AMQPLAIN"):
            await open_publisher("tls.events", url=f"{url}&auth=amqplain")
        await operator.close()
    finally:
        await asyncio.to_thread(node.kill)
