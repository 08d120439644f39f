"""A lean AMQP 0-9-1 client for the RabbitMQ port: a publisher in confirm mode for the events
(`ConfirmPublisher`) and a consumer of the commands (`CommandConsumer`), each on a connection
of its own, on one shared core (`AmqpConnection`: the handshake, TLS and authentication from
the URL, heartbeats, the agreed frame size, closing).

Why not aio-pika/aiormq for these two, as for the rest of the RabbitMQ port (the topology):
an event's confirmed publication through aiormq cost 200-400 µs of CPU on this machine, one
after another as the relay publishes at a low rate (bench/bench_bus_publish.py; ~0.76 ms a
UFTP message for its two events in bench/bench_bus.py), and taking one command in about
500 µs (bench/bench_commands_intake.py), against the 25% the bridge may add to a message.
Most of it is aiormq's general machinery, not the protocol: a `pamqp` frame object per frame,
marshalled or unmarshalled one by one; its reader task's two `readexactly` per frame; a queue
and a hand-over to its writer task per frame written; a dispatch through each channel's own
reader task and frame queue; for a delivery, its content gathered by a coroutine and the
consumer's callback started in a task of its own; locks, a `Countdown` and an
`asyncio.timeout` per publish. The options weighed for the events:

1. encoding the whole publication at once while still publishing through aiormq: aiormq
   builds its own frames from pamqp objects, so all that can be shortened there is the
   properties' encoding, which the port already did for aiormq (20 of
   the 200-400 µs);
2. writing our own frames on aiormq's connection: needs its private writer queue, channel
   numbers and confirmation maps (their names and semantics changed within 7.x), and the
   reader side would still be aiormq's;
3. this module: a connection of its own, on an `asyncio.Protocol` (no reader or writer
   task): what is written goes in one `transport.write`, and what comes is read straight out
   of `data_received`. For the events one channel in confirm mode: a publication encoded in
   one piece, one future, and the acks read without pamqp (an ack is a fixed 21-octet frame).
   For the commands one channel with the consumer's prefetch: a Basic.Deliver, its content
   header and body frames are read without pamqp into one `Delivery`, whose handler runs in
   one task, and whose settlement is one fixed 21-octet frame written at once. Everything
   rare (the handshake, a Basic.Return's frames, a Basic.Cancel, a Channel.Close or
   Connection.Close from the broker) is decoded by pamqp, aio-pika's own codec, and the
   frames written are byte for byte what pamqp would write (tests compare them, and compare
   the properties decoded here with pamqp's).
   Measured: 57-170 µs per event against 205-412 µs through aiormq, in the same runs on the
   shared machine, of which 40-90 µs are the floor of any asyncio client here (the loop's
   turns, `send` and `recv` on loopback); figures in bench/README.md.

The guarantees are those of the port (`adapter.bus.port`). `publish` returns on the broker's
Basic.Ack of that publication and raises `Unroutable` when a Basic.Return of it came first
(mandatory, no binding), `BusUnavailable` on a Basic.Nack, a lost connection, a closed
channel, a confirm that did not come within the timeout, and at once while the broker
blocks publishers (Connection.Blocked: nothing written then would be read). A command is
settled only with the verdict its handler returned, on the connection it came on; one whose
connection is gone by then is left to the broker, which delivers it again (with
``redelivered``), as it does everything unacknowledged when a connection ends. A lost
connection is not reopened here: the port opens a new one (the next `publish`; the port's
keeper of the consumer), so an outage costs no task and no loop.

Heartbeats are kept as AMQP 0-9-1 asks (section 4.2.7): one is sent when nothing else was
for half the negotiated interval, and a connection from which nothing arrived for three
intervals is dropped. Basic.Return carries no delivery tag, so a returned message is matched
to its publication by message id and routing key (the broker returns in publication order,
and the relay never has one event in flight twice); that is also how aiormq matches them.
What the broker controls is bounded: a frame larger than the agreed ``frame_max``, content
out of its order (4.2.6) or a body larger than any RabbitMQ sends drops the connection (what
was delivered and not settled is delivered again); a delivery whose properties do not decode,
or whose body is above the consumer's limit (its body frames are then counted, not kept), is
handed to the handler marked `Delivery.malformed` rather than dropping the connection for it,
which would only bring it back: the port has the bridge refuse it (dead-lettered, with the
error event that says why).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import platform
import ssl
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pamqp.decode
import pamqp.frame
import pamqp.header
import pamqp.heartbeat
from pamqp import commands as spec
from pamqp.exceptions import UnmarshalingException
from yarl import URL

from adapter.bus.port import BusUnavailable, Unroutable, Verdict

__all__ = [
    "AmqpConnection",
    "ChannelRefused",
    "CommandConsumer",
    "ConfirmPublisher",
    "Delivery",
    "decode_properties",
    "encode_publication",
    "settlement",
]

log = logging.getLogger(__name__)

#: Frame types and the frame end octet (AMQP 0-9-1, section 4.2.3).
_METHOD, _HEADER, _BODY, _HEARTBEAT = 1, 2, 3, 8
_FRAME_END = 0xCE
_FRAME = struct.Struct(">BHI")
#: The frame header, payload size and end octet around a payload: 8 octets (4.2.3).
_FRAME_OVERHEAD = 8
_ACK_INDEX = spec.Basic.Ack.index
_NACK_INDEX = spec.Basic.Nack.index
_REJECT_INDEX = spec.Basic.Reject.index
_DELIVER_INDEX = spec.Basic.Deliver.index
#: An ack's or nack's payload: its method index, delivery tag, then the flag bits.
_SETTLE_PAYLOAD = struct.Struct(">IQB")  # 13 octets
_SETTLE_FRAME = struct.Struct(">BHIIQBB")  # the same as a whole frame, with its end octet
_CONTENT_HEADER = struct.Struct(">HHQ")  # class id (Basic), weight (0), body size
_INDEX = struct.Struct(">I")
_TAG = struct.Struct(">QB")  # a Basic.Deliver's delivery tag and its ``redelivered`` bit
#: AMQP's short and long unsigned integers (4.2.5.1), here and in the port's encoders.
UINT16 = struct.Struct(">H")
UINT32 = struct.Struct(">I")
#: Basic.Publish's method index and its deprecated ``ticket`` (0).
_PUBLISH_PREFIX = struct.pack(">IH", spec.Basic.Publish.index, 0)
_BASIC_CLASS = 60
_HEARTBEAT_FRAME = pamqp.frame.marshal(pamqp.heartbeat.Heartbeat(), 0)

#: Our frame size limit, RabbitMQ's default: the broker may propose less.
FRAME_MAX = 131072
#: The largest body a delivery may announce: RabbitMQ refuses publications above its
#: ``max_message_size``, which it caps at 512 MiB; more is a broken peer. What a command may
#: be is the consumer's own limit (``max_body``: the bridge's ``max_body_bytes``), above
#: which its body is not kept.
MAX_BODY = 512 * 1024 * 1024
#: A heartbeat missed this many times over drops the connection (as aiormq does).
_HEARTBEAT_GRACE = 3
CHANNEL = 1


def encode_publication(
    channel: int,
    exchange: bytes,
    routing_key: str,
    properties: bytes,
    body: bytes,
    frame_max: int,
    *,
    mandatory: bool = True,
) -> bytes:
    """A Basic.Publish with its content header (`properties` as pamqp's
    ``Basic.Properties.marshal`` encodes them: the flags, then the values) and its body in
    frames of at most `frame_max` octets: the bytes pamqp marshals for the same frames, as
    aiormq splits the body, in one piece. `exchange` is the exchange's name, encoded."""
    header = _CONTENT_HEADER.pack(_BASIC_CLASS, 0, len(body)) + properties
    parts = [
        _publish_frame(channel, exchange, routing_key, mandatory),
        _FRAME.pack(_HEADER, channel, len(header)),
        header,
        b"\xce",
    ]
    step = frame_max - _FRAME_OVERHEAD
    if 0 < len(body) <= step:  # the usual: one body frame
        parts += (_FRAME.pack(_BODY, channel, len(body)), body, b"\xce")
    else:  # none for an empty body, or several
        for start in range(0, len(body), step):
            chunk = body[start : start + step]
            parts += (_FRAME.pack(_BODY, channel, len(chunk)), chunk, b"\xce")
    return b"".join(parts)


@functools.lru_cache(maxsize=64)
def _publish_frame(channel: int, exchange: bytes, routing_key: str, mandatory: bool) -> bytes:
    """The Basic.Publish method frame of `encode_publication`, kept for the routing keys in
    use: the relay publishes to a few dozen (``in.<MessageType>``, ``outcome.<status>``...),
    the same again event after event; past the bound the oldest is made again when next
    needed."""
    key = routing_key.encode("utf-8")
    if len(key) > 255:  # a shortstr; aiormq refuses it too
        raise ValueError(f"routing key longer than 255 octets: {routing_key[:40]!r}...")
    method = b"%b%c%b%c%b%c" % (
        _PUBLISH_PREFIX,
        len(exchange),
        exchange,
        len(key),
        key,
        1 if mandatory else 0,
    )
    return _FRAME.pack(_METHOD, channel, len(method)) + method + b"\xce"


class ChannelRefused(BusUnavailable):
    """The broker closed the channel or the connection while it was being opened, with
    `reply_code` (e.g. 404: the queue to consume from does not exist)."""

    def __init__(self, message: str, reply_code: int) -> None:
        super().__init__(message)
        self.reply_code = reply_code


class AmqpConnection(asyncio.Protocol):
    """One AMQP connection with one channel, read in `data_received`: the part the publisher
    and the consumer share. A subclass says what its channel is for (`_prepare`) and reads
    the frames it expects (`_frame`, `_on_method`); the rest is here.

    Once it `is_closed` (lost, closed by the broker, a channel error, a frame it cannot
    read) it stays so: open another."""

    #: What the connection is for, in messages: "the events connection".
    purpose: ClassVar[str] = "AMQP"
    #: The client capabilities it announces (Connection.StartOk), besides
    #: ``authentication_failure_close``.
    capabilities: ClassVar[dict[str, bool]] = {}

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._frame_max = FRAME_MAX
        self._heartbeat = 0.0
        self._last_sent = self._last_received = self._loop.time()
        self._ticker: asyncio.TimerHandle | None = None
        #: Until the channel is ready: the frames the handshake waits for.
        self._handshake: asyncio.Queue[tuple[int, Any]] | None = asyncio.Queue()
        #: Why the connection is unusable; None while it is open.
        self._closed: str | None = "not open"
        self._lost = self._loop.create_future()
        #: Why the broker stopped reading from us (Connection.Blocked, e.g. a memory or disk
        #: alarm), until Connection.Unblocked; None while it reads.
        self.blocked: str | None = None

    # -- opening and closing ------------------------------------------------------------

    async def _start(self, url: str, name: str, connect_timeout: float) -> None:
        """Connect to the broker at `url` (``amqp://`` or ``amqps://``, the query options of
        aiormq's TLS and ``heartbeat``), open the channel and `_prepare` it. Raises
        `BusUnavailable`, having dropped what it opened."""
        parsed = URL(url)
        try:
            async with asyncio.timeout(connect_timeout):
                context = _tls_context(parsed) if parsed.scheme == "amqps" else None
                port = parsed.port or (5671 if context is not None else 5672)
                await self._loop.create_connection(
                    lambda: self, parsed.host or "localhost", port, ssl=context
                )
                await self._open(parsed, name)
        except BusUnavailable:
            self.abort()
            raise
        except (OSError, TimeoutError, UnmarshalingException, ValueError, ssl.SSLError) as exc:
            self.abort()
            raise BusUnavailable(f"cannot open the {self.purpose} connection: {exc!r}") from None
        except BaseException:
            self.abort()
            raise

    async def _open(self, url: URL, name: str) -> None:
        assert self._transport is not None
        self._write(pamqp.header.ProtocolHeader().marshal())
        start = await self._expect(spec.Connection.Start)
        # As aiormq reads the URL: ``auth=external`` (the TLS client certificate names the
        # user) or PLAIN, with guest for a user or password not given.
        mechanism = url.query.get("auth", "plain").upper()
        if mechanism not in ("PLAIN", "EXTERNAL") or mechanism not in start.mechanisms.split():
            raise BusUnavailable(
                f"authentication {mechanism}: the broker offers {start.mechanisms}"
            )
        response = (
            "" if mechanism == "EXTERNAL" else f"\0{url.user or 'guest'}\0{url.password or 'guest'}"
        )
        self._send(
            0,
            spec.Connection.StartOk(
                client_properties={
                    "product": "uftp-adapter",
                    "platform": f"Python {platform.python_version()}",
                    "connection_name": name,
                    "capabilities": {**self.capabilities, "authentication_failure_close": True},
                },
                mechanism=mechanism,
                response=response,
                locale="en_US",
            ),
        )
        tune = await self._expect(spec.Connection.Tune)
        frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        asked = url.query.get("heartbeat")  # seconds, as aiormq reads it (a float too)
        heartbeat = tune.heartbeat if asked is None else int(float(asked))
        if not 0 <= heartbeat < 65536:
            heartbeat = tune.heartbeat
        self._send(
            0,
            spec.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=frame_max, heartbeat=heartbeat
            ),
        )
        self._frame_max, self._heartbeat = frame_max, float(heartbeat)
        vhost = url.path[1:].replace("%2F", "/") if url.path not in ("", "/") else "/"
        self._send(0, spec.Connection.Open(virtual_host=vhost))
        await self._expect(spec.Connection.OpenOk)
        self._send(CHANNEL, spec.Channel.Open())
        await self._expect(spec.Channel.OpenOk)
        await self._prepare()
        self._handshake = None
        self._closed = None
        self._schedule_tick()
        self._opened()

    async def _prepare(self) -> None:
        """Make the open channel what it is for (Confirm.Select, Basic.Consume...)."""

    def _opened(self) -> None:
        """The connection is in use from now on."""

    async def _expect(self, kind: type[Any]) -> Any:
        """The next frame of the handshake, which must be a `kind`."""
        assert self._handshake is not None
        lost = self._lost
        getter = asyncio.ensure_future(self._handshake.get())
        try:
            await asyncio.wait((getter, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            getter.cancel()
        if not getter.done() or getter.cancelled():
            raise BusUnavailable(
                f"the {self.purpose} connection closed while opening: {self._closed}"
            )
        channel, frame = getter.result()
        if isinstance(frame, spec.Connection.Close | spec.Channel.Close):
            if isinstance(frame, spec.Connection.Close):
                self._send(0, spec.Connection.CloseOk())
            else:
                self._send(channel, spec.Channel.CloseOk())
            raise ChannelRefused(
                f"the broker refused the {self.purpose} connection: "
                f"{frame.reply_code} {frame.reply_text}",
                frame.reply_code or 0,
            )
        if not isinstance(frame, kind):
            raise BusUnavailable(
                f"unexpected {frame.name} while opening the {self.purpose} connection"
            )
        return frame

    async def close(self) -> None:
        """Close the connection politely (Connection.Close, then wait a moment for its
        CloseOk)."""
        if self._transport is None or self._transport.is_closing():
            self._shut("closed")
            return
        if self._closed is None:
            self._close_connection("closing", "closed")
        self._shut("closed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(self._lost)
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once."""
        self._shut("aborted")
        if self._transport is not None:
            self._transport.abort()

    @property
    def is_closed(self) -> bool:
        return self._closed is not None

    @property
    def frame_max(self) -> int:
        """The largest frame, in octets, agreed with the broker."""
        return self._frame_max

    @property
    def heartbeat(self) -> float:
        """The heartbeat interval agreed with the broker, in seconds (0: none)."""
        return self._heartbeat

    def _write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)
        self._last_sent = self._loop.time()

    def _send(self, channel: int, frame: Any) -> None:
        self._write(pamqp.frame.marshal(frame, channel))

    # -- what the broker sends ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._shut(f"lost ({exc})" if exc is not None else "lost")
        if not self._lost.done():
            self._lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._last_received = self._loop.time()
        buffer = self._buffer
        buffer += data
        offset = 0
        try:
            while (available := len(buffer) - offset) >= 7:
                kind, channel, length = _FRAME.unpack_from(buffer, offset)
                # The limit both sides agreed, which counts the frame's header and end octet
                # (4.2.3), as `encode_publication` does.
                if length + _FRAME_OVERHEAD > self._frame_max:
                    raise UnmarshalingException("frame", f"a frame of {length} octets")
                if available < length + _FRAME_OVERHEAD:
                    break
                start = offset + 7
                end = start + length
                if buffer[end] != _FRAME_END:
                    raise UnmarshalingException("frame", "no frame end octet")
                offset = end + 1
                self._frame(kind, channel, buffer, start, end)
                if self._transport is not None and self._transport.is_closing():
                    break  # closed by that frame: what came after it is for nobody
        except (UnmarshalingException, ValueError, struct.error, RecursionError) as exc:
            # RecursionError: pamqp's decoder of a table nested as deep as a frame allows.
            log.warning(
                "bus: dropping the %s connection: undecodable frame (%s)", self.purpose, exc
            )
            self.abort()
        finally:
            del buffer[:offset]

    def _frame(self, kind: int, channel: int, buffer: bytearray, start: int, end: int) -> None:
        """A whole frame whose payload is ``buffer[start:end]``. The subclass reads the
        frames it expects often, without pamqp, and leaves the rest to `_on_frame`."""
        self._on_frame(kind, bytes(buffer[start - 7 : end + 1]))

    def _on_frame(self, kind: int, data: bytes) -> None:
        """A frame of `data` (the whole frame), decoded by pamqp."""
        if kind == _HEARTBEAT:
            return
        _, channel, frame = pamqp.frame.unmarshal(data)
        if isinstance(frame, spec.Connection.Blocked):  # may come as soon as it is open
            self.blocked = frame.reason or "blocked"
            log.warning("bus: the broker blocks publishing: %s", frame.reason)
        elif isinstance(frame, spec.Connection.Unblocked):
            self.blocked = None
            log.info("bus: the broker takes publications again")
        elif self._handshake is not None:
            self._handshake.put_nowait((channel, frame))
        elif isinstance(frame, spec.Connection.Close):
            self._send(0, spec.Connection.CloseOk())
            self._shut(f"closed by the broker: {frame.reply_code} {frame.reply_text}")
            self._close_transport()
        elif isinstance(frame, spec.Channel.Close):
            self._send(CHANNEL, spec.Channel.CloseOk())
            self._close_connection(
                "channel closed", f"closed with its channel: {frame.reply_code} {frame.reply_text}"
            )
            self._close_transport()
        elif isinstance(frame, spec.Connection.CloseOk):
            self._close_transport()
        elif not self._on_method(frame):
            log.debug("bus: ignored %s on the %s connection", type(frame).__name__, self.purpose)

    def _on_method(self, frame: Any) -> bool:
        """A frame of the subclass's, decoded by pamqp; whether it was one."""
        return False

    # -- failure and time ---------------------------------------------------------------

    def _shut(self, why: str) -> None:
        """Unusable from now on."""
        if self._closed is None or self._closed == "not open":
            self._closed = why
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _close_connection(self, reply_text: str, why: str) -> None:
        """Unusable from now on, for `why`, and the broker asked to close the connection (a
        Connection.Close, 200 `reply_text`): its CloseOk closes the transport."""
        self._shut(why)
        self._send(
            0,
            spec.Connection.Close(reply_code=200, reply_text=reply_text, class_id=0, method_id=0),
        )

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _tick_interval(self) -> float:
        return min(1.0, self._heartbeat / 2) if self._heartbeat else 1.0

    def _schedule_tick(self) -> None:
        self._ticker = self._loop.call_later(max(self._tick_interval(), 0.05), self._tick)

    def _tick(self) -> None:
        """Heartbeats, both ways, then the subclass's `_on_tick`."""
        self._ticker = None
        if self._closed is not None:
            return
        now = self._loop.time()
        if self._heartbeat:
            if now - self._last_received > self._heartbeat * _HEARTBEAT_GRACE:
                log.warning(
                    "bus: no heartbeat from the broker: dropping the %s connection", self.purpose
                )
                self.abort()
                return
            if now - self._last_sent >= self._heartbeat / 2:
                self._write(_HEARTBEAT_FRAME)
        self._on_tick(now)
        self._schedule_tick()

    def _on_tick(self, now: float) -> None:
        pass


# -- the events -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A publication awaiting its confirm."""

    future: asyncio.Future[str | None]
    message_id: str
    routing_key: str
    deadline: float
    #: The reply text of a Basic.Return of it, which comes before its ack.
    returned: str | None = None


class ConfirmPublisher(AmqpConnection):
    """One AMQP connection with one channel in confirm mode, publishing and nothing else.

    Open it with `open`; once it `is_closed` it stays so: open another."""

    purpose = "events"
    capabilities: ClassVar[dict[str, bool]] = {
        "publisher_confirms": True,
        "basic.nack": True,
        "connection.blocked": True,
    }

    def __init__(self, exchange: str, *, timeout: float) -> None:
        spec.Basic.Publish(exchange=exchange)  # pamqp's check of the name (length, octets)
        super().__init__()
        self._exchange = exchange.encode("utf-8")
        self._timeout = timeout
        self._pending: dict[int, _Pending] = {}
        self._tag = 0
        #: A Basic.Return being read: its method frame, then its content header once read.
        self._return: spec.Basic.Return | None = None
        self._return_header: pamqp.header.ContentHeader | None = None
        self._return_left = 0

    @classmethod
    async def open(
        cls,
        url: str,
        exchange: str,
        *,
        name: str,
        timeout: float,
        connect_timeout: float = 10.0,
    ) -> ConfirmPublisher:
        """Connect to the broker at `url`, open a channel and put it in confirm mode.
        Raises `BusUnavailable`."""
        publisher = cls(exchange, timeout=timeout)
        await publisher._start(url, name, connect_timeout)
        return publisher

    async def _prepare(self) -> None:
        self._send(CHANNEL, spec.Confirm.Select())
        await self._expect(spec.Confirm.SelectOk)

    async def publish(
        self, routing_key: str, properties: bytes, body: bytes, message_id: str
    ) -> None:
        """Publish `body` to the exchange, mandatory, with `properties` (encoded, as pamqp's
        ``Basic.Properties.marshal``, carrying `message_id`), and return on its ack."""
        if self._closed is not None:
            raise BusUnavailable(f"the events connection is {self._closed}")
        if self.blocked:
            # The broker reads nothing from us until its alarm clears: what we wrote would only
            # pile up here (and time out). The relay tries again after its backoff.
            raise BusUnavailable(f"the broker blocks publishing: {self.blocked}")
        frames = encode_publication(
            CHANNEL, self._exchange, routing_key, properties, body, self._frame_max
        )
        self._tag += 1
        future: asyncio.Future[str | None] = self._loop.create_future()
        self._pending[self._tag] = _Pending(
            future, message_id, routing_key, self._loop.time() + self._timeout
        )
        self._write(frames)
        returned = await future
        if returned is not None:
            raise Unroutable(routing_key, returned)

    def _frame(self, kind: int, channel: int, buffer: bytearray, start: int, end: int) -> None:
        if kind == _METHOD and end - start == 13 and channel == CHANNEL:
            # The usual frame: the ack of one publication.
            index, tag, bits = _SETTLE_PAYLOAD.unpack_from(buffer, start)
            if index in (_ACK_INDEX, _NACK_INDEX):
                self._confirm(tag, bool(bits & 1), index == _NACK_INDEX)
                return
        if kind == _BODY and self._return_header is not None:
            self._return_left -= end - start
            if self._return_left <= 0:
                self._returned()
            return
        self._on_frame(kind, bytes(buffer[start - 7 : end + 1]))

    def _on_method(self, frame: Any) -> bool:
        if isinstance(frame, spec.Basic.Return):
            self._return = frame
        elif isinstance(frame, pamqp.header.ContentHeader) and self._return is not None:
            self._return_header = frame
            self._return_left = frame.body_size
            if frame.body_size == 0:
                self._returned()
        elif isinstance(frame, spec.Basic.Ack | spec.Basic.Nack):  # not in the usual form
            self._confirm(frame.delivery_tag, frame.multiple, isinstance(frame, spec.Basic.Nack))
        else:
            return False
        return True

    def _returned(self) -> None:
        """A Basic.Return with its content is read: its publication gets `Unroutable` once
        its ack comes."""
        method, header = self._return, self._return_header
        self._return = self._return_header = None
        assert method is not None and header is not None
        message_id = header.properties.message_id
        for pending in self._pending.values():
            if (
                pending.returned is None
                and pending.message_id == message_id
                and pending.routing_key == method.routing_key
            ):
                pending.returned = f"{method.reply_code} {method.reply_text}"
                return
        log.warning("bus: a returned message matches no publication awaiting its confirm")

    def _confirm(self, tag: int, multiple: bool, nack: bool) -> None:
        pending = self._pending
        # Tags are in publication order: those up to `tag` are a prefix.
        tags = [t for t in pending if t <= tag] if multiple else [tag]
        for t in tags:
            entry = pending.pop(t, None)
            if entry is None or entry.future.done():  # timed out, or its caller went away
                continue
            if nack:
                entry.future.set_exception(BusUnavailable("the broker nacked the event"))
            else:
                entry.future.set_result(entry.returned)

    def _shut(self, why: str) -> None:
        """Unusable from now on: what awaits a confirm gets `BusUnavailable`."""
        super()._shut(why)
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(
                    BusUnavailable(f"the events connection was {why} before the confirm")
                )

    def _tick_interval(self) -> float:
        return min(super()._tick_interval(), self._timeout / 4)

    def _on_tick(self, now: float) -> None:
        """Publications whose confirm is overdue."""
        overdue = []
        for tag, entry in self._pending.items():
            if entry.deadline > now:
                break  # in publication order, so in order of deadline
            overdue.append(tag)
        for tag in overdue:
            entry = self._pending.pop(tag)
            if not entry.future.done():
                entry.future.set_exception(
                    BusUnavailable(f"no confirm from the broker within {self._timeout} s")
                )


# -- the commands -----------------------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    """One message the broker delivered to the consumer, as the port reads it."""

    delivery_tag: int
    redelivered: bool
    content_type: str | None = None
    message_id: str | None = None
    headers: dict[str, object] = field(default_factory=dict)
    body: bytes = b""
    #: While its content is read: the body octets still to come (-1 before its content
    #: header), and the body frames so far.
    body_size: int = -1
    chunks: list[bytes] = field(default_factory=list)
    #: Why it cannot be read as it came (its properties do not decode, its body is above the
    #: consumer's limit), else None: the handler is to refuse it.
    malformed: str | None = None
    #: Its body is above the consumer's limit: its frames are counted, not kept.
    oversized: bool = False


def settlement(verdict: Verdict, delivery_tag: int, channel: int = CHANNEL) -> bytes:
    """The frame that settles a delivery by `verdict`: Basic.Ack; Basic.Reject without
    requeue (the broker dead-letters it); Basic.Nack with requeue. As pamqp marshals them."""
    if verdict is Verdict.ACK:
        index, bits = _ACK_INDEX, 0
    elif verdict is Verdict.REJECT:
        index, bits = _REJECT_INDEX, 0  # requeue=False
    else:
        index, bits = _NACK_INDEX, 2  # multiple=False, requeue=True
    return _SETTLE_FRAME.pack(_METHOD, channel, 13, index, delivery_tag, bits, _FRAME_END)


#: Basic's properties in the order of their flags, from the highest bit (AMQP 0-9-1,
#: section 1.8.3 of the XML spec): how each is encoded. ``s`` a short string, ``o`` an
#: octet, ``t`` a timestamp (64 bits), ``F`` a field table.
_PROPERTIES = (
    ("content_type", "s"),
    ("content_encoding", "s"),
    ("headers", "F"),
    ("delivery_mode", "o"),
    ("priority", "o"),
    ("correlation_id", "s"),
    ("reply_to", "s"),
    ("expiration", "s"),
    ("message_id", "s"),
    ("timestamp", "t"),
    ("message_type", "s"),
    ("user_id", "s"),
    ("app_id", "s"),
    ("cluster_id", "s"),
)


@functools.lru_cache(maxsize=64)
def _present(flags: int) -> tuple[tuple[str, str], ...]:
    """The properties a word of property `flags` says are present: those of `_PROPERTIES`
    whose flag is set, in order, for `decode_properties` to step through those alone rather
    than test all 14 (383 opcodes for a command's four properties, 221 so). Kept for the
    words in use: a producer of commands sends the same word message after message; the
    publishers choose them (2^14 at most), and past the bound the oldest is made again when
    next needed."""
    return tuple(prop for shift, prop in enumerate(_PROPERTIES) if flags & (0x8000 >> shift))


def decode_properties(
    data: bytes | bytearray, offset: int, end: int
) -> tuple[str | None, str | None, dict[str, object]]:
    """The content type, message id and headers of the properties in ``data[offset:end]``
    (the property flags, then the values), decoded as pamqp decodes them (a test compares):
    the headers' long strings read here, a table with any other value by pamqp. Raises
    ValueError (UnicodeDecodeError among them) for what does not decode."""
    (flags,) = UINT16.unpack_from(data, offset)
    if flags & 1:
        raise ValueError("a second word of property flags")  # none is defined in 0-9-1
    offset += 2
    content_type = message_id = None
    headers: dict[str, object] = {}
    for name, kind in _present(flags):
        if kind == "s":
            length = data[offset]
            value = data[offset + 1 : offset + 1 + length].decode("utf-8")
            offset += 1 + length
            if name == "content_type":
                content_type = value
            elif name == "message_id":
                message_id = value
        elif kind == "o":
            offset += 1
        elif kind == "t":
            offset += 8
        else:
            (length,) = UINT32.unpack_from(data, offset)
            headers = _field_table(data, offset + 4, offset + 4 + length)
            offset += 4 + length
        if offset > end:
            raise ValueError(f"the property {name} runs past the content header")
    return content_type, message_id, headers


def _field_table(data: bytes | bytearray, offset: int, end: int) -> dict[str, object]:
    """A field table of ``data[offset:end]``: long strings (``S``, all a CloudEvents binary
    message carries) read here, as pamqp reads them; a table with anything else by pamqp."""
    table: dict[str, object] = {}
    start = offset
    while offset < end:
        length = data[offset]
        key_end = offset + 1 + length
        if key_end >= end or data[key_end] != 0x53:  # "S"
            return _pamqp_table(data, start, end)
        key = data[offset + 1 : key_end].decode("utf-8")
        (size,) = UINT32.unpack_from(data, key_end + 1)
        offset = key_end + 5 + size
        if offset > end:
            raise ValueError("a field table value runs past its table")
        raw = data[key_end + 5 : offset]
        try:
            table[key] = raw.decode("utf-8")
        except UnicodeDecodeError:  # pamqp keeps such a long string as bytes
            table[key] = bytes(raw)
    return table


def _pamqp_table(data: bytes | bytearray, offset: int, end: int) -> dict[str, object]:
    try:
        _, table = pamqp.decode.field_table(UINT32.pack(end - offset) + bytes(data[offset:end]))
    except RecursionError:  # pamqp recurses per nested table: 6 octets a level in a frame
        raise ValueError("field tables nested too deep") from None
    return dict(table)


class CommandConsumer(AmqpConnection):
    """One AMQP connection with one channel consuming one queue (prefetch `prefetch`,
    explicit acks), handing each delivery to `handler` in a task of its own and settling it
    by the verdict returned.

    `consuming` says whether the broker delivers to it now: from its Basic.ConsumeOk until
    the connection ends or the broker cancels the consumer (a Basic.Cancel: the queue was
    deleted), which ends the connection too. `stopped` then holds why; open another."""

    purpose = "commands"
    # Without it RabbitMQ ends a consumer whose queue is deleted silently: no Basic.Cancel,
    # and nothing more delivered.
    capabilities: ClassVar[dict[str, bool]] = {"consumer_cancel_notify": True}

    def __init__(
        self,
        queue: str,
        handler: Callable[[Delivery], Awaitable[Verdict]],
        *,
        prefetch: int,
        consumer_tag: str,
        max_body: int = MAX_BODY,
    ) -> None:
        spec.Basic.Consume(queue=queue, consumer_tag=consumer_tag)  # pamqp's checks
        super().__init__()
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._max_body = min(max_body, MAX_BODY)
        self.consumer_tag = consumer_tag
        #: The delivery whose content is being read.
        self._incoming: Delivery | None = None
        #: Deliveries read before the handshake ended (they may follow ConsumeOk at once).
        self._early: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: Deliveries handed over and not yet settled: never more than the prefetch.
        self._unsettled = 0
        #: Why the broker no longer delivers to it, once it does not.
        self.stopped: asyncio.Future[str] = self._loop.create_future()
        #: Whether the broker cancelled the consumer (Basic.Cancel).
        self.cancelled = False

    @classmethod
    async def open(
        cls,
        url: str,
        queue: str,
        handler: Callable[[Delivery], Awaitable[Verdict]],
        *,
        prefetch: int,
        consumer_tag: str,
        name: str,
        connect_timeout: float = 10.0,
        max_body: int = MAX_BODY,
    ) -> CommandConsumer:
        """Connect to the broker at `url`, open a channel, set its prefetch and consume
        `queue`; a body above `max_body` octets is not kept (the delivery is handed over
        `malformed`). Raises `BusUnavailable` (`ChannelRefused` with 404 when there is no
        such queue)."""
        consumer = cls(
            queue, handler, prefetch=prefetch, consumer_tag=consumer_tag, max_body=max_body
        )
        await consumer._start(url, name, connect_timeout)
        return consumer

    async def _prepare(self) -> None:
        self._send(CHANNEL, spec.Basic.Qos(prefetch_count=self._prefetch))
        await self._expect(spec.Basic.QosOk)
        self._send(CHANNEL, spec.Basic.Consume(queue=self._queue, consumer_tag=self.consumer_tag))
        await self._expect(spec.Basic.ConsumeOk)

    def _opened(self) -> None:
        early, self._early = self._early, []
        for delivery in early:
            self._start_handler(delivery)

    @property
    def consuming(self) -> bool:
        return self._closed is None

    async def close(self) -> None:
        """Stop: nothing more is handed to the handler, the handlers still running are
        cancelled (what they did not settle the broker delivers again), then the connection
        is closed."""
        if self._closed is None and self._transport is not None:
            if self._transport.is_closing():
                self._shut("closed")
            else:
                self._close_connection("closing", "closed")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().close()

    async def retire(self) -> None:
        """Once it no longer consumes: end its connection (a moment for the broker's
        CloseOk, then dropped: after a Basic.Cancel the CloseOk may never come), then wait
        for the handlers still running. What they settle no longer reaches the broker, which
        delivers those commands again."""
        await super().close()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- deliveries ---------------------------------------------------------------------

    def _frame(self, kind: int, channel: int, buffer: bytearray, start: int, end: int) -> None:
        incoming = self._incoming
        if incoming is not None:  # its content frames come next, nothing else (4.2.6)
            if kind == _BODY and channel == CHANNEL and incoming.body_size > 0:
                if not incoming.oversized:
                    incoming.chunks.append(bytes(buffer[start:end]))
                incoming.body_size -= end - start
                if incoming.body_size < 0:
                    raise UnmarshalingException("frame", "a body longer than announced")
                if incoming.body_size == 0:
                    self._delivered(incoming)
            elif kind == _HEADER and channel == CHANNEL and incoming.body_size < 0:
                self._content_header(incoming, buffer, start, end)
            elif kind != _HEARTBEAT:
                raise UnmarshalingException("frame", "a frame out of a delivery's content")
            return
        if kind == _METHOD and channel == CHANNEL and end - start >= 4:
            (index,) = _INDEX.unpack_from(buffer, start)
            if index == _DELIVER_INDEX:
                # Its consumer tag (ours: one consumer a connection), delivery tag,
                # redelivered, then the exchange and routing key, which the port does not read.
                at = start + 4
                at += 1 + buffer[at]
                if at + _TAG.size > end:
                    raise UnmarshalingException("frame", "a short Basic.Deliver")
                tag, redelivered = _TAG.unpack_from(buffer, at)
                self._incoming = Delivery(tag, bool(redelivered & 1))
                return
        elif kind in (_HEADER, _BODY):
            raise UnmarshalingException("frame", "content without a delivery")
        self._on_frame(kind, bytes(buffer[start - 7 : end + 1]))

    def _content_header(self, incoming: Delivery, buffer: bytearray, start: int, end: int) -> None:
        if end - start < _CONTENT_HEADER.size + 2:
            raise UnmarshalingException("frame", "a short content header")
        class_id, _, size = _CONTENT_HEADER.unpack_from(buffer, start)
        if class_id != _BASIC_CLASS:
            raise UnmarshalingException("frame", f"a content header of class {class_id}")
        if size > MAX_BODY:
            raise UnmarshalingException("frame", f"a body of {size} octets")
        try:
            incoming.content_type, incoming.message_id, incoming.headers = decode_properties(
                buffer, start + _CONTENT_HEADER.size, end
            )
        except (ValueError, IndexError, struct.error, UnmarshalingException) as exc:
            incoming.malformed = f"undecodable properties ({exc})"
        if size > self._max_body:
            incoming.oversized = True
            incoming.malformed = incoming.malformed or f"the body exceeds {self._max_body} bytes"
        incoming.body_size = size
        if size == 0:
            self._delivered(incoming)

    def _delivered(self, delivery: Delivery) -> None:
        """`delivery` is read whole: to its handler."""
        self._incoming = None
        delivery.body = b"".join(delivery.chunks)  # a body of one frame: that frame's bytes
        delivery.chunks = []
        if self._handshake is None and self._closed is not None:
            # Behind a Basic.Cancel, or while closing: no settlement of it could be written,
            # and `close` no longer waits for a handler started now. The broker delivers it
            # again (to the next consumer), as everything unsettled when a connection ends.
            log.debug("bus: a command read on the %s connection is left", self._closed)
            return
        if self._prefetch and self._unsettled >= self._prefetch:
            # The broker keeps to the prefetch (Basic.Qos); one that does not would have us
            # run handlers without bound. What it delivered comes again on a new connection.
            raise UnmarshalingException("frame", "a delivery beyond the prefetch")
        self._unsettled += 1
        if self._handshake is not None:
            self._early.append(delivery)
        else:
            self._start_handler(delivery)

    def _start_handler(self, delivery: Delivery) -> None:
        task = self._loop.create_task(self._handle(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            verdict = await self._handler(delivery)
        except Exception:
            log.exception("bus: the command handler failed; the command is requeued")
            verdict = Verdict.REQUEUE
        finally:
            # Before the settlement is written: the broker's next delivery, sent once it
            # reads it, is within the prefetch. A handler cancelled (`close`) leaves its
            # delivery unsettled; counting it off all the same errs towards the broker.
            self._unsettled -= 1
        self.settle(delivery.delivery_tag, verdict)

    def settle(self, delivery_tag: int, verdict: Verdict) -> None:
        """Settle a delivery of this connection (a delivery tag belongs to one channel) by
        `verdict`. AMQP has no answer to it, so there is nothing to wait for; a settlement
        lost with the connection is a redelivery."""
        if self._closed is not None:
            # The broker delivers the command again, and its id makes that delivery a no-op
            # if it was carried out.
            log.warning(
                "bus: could not settle a command (the commands connection was %s); it will "
                "be redelivered",
                self._closed,
            )
            return
        self._write(settlement(verdict, delivery_tag))

    def _on_method(self, frame: Any) -> bool:
        if isinstance(frame, spec.Basic.Cancel) and frame.consumer_tag == self.consumer_tag:
            # The queue is gone (deleted, or its node): nothing more comes on this consumer.
            log.warning("bus: the broker cancelled the command consumer (its queue is gone)")
            self.cancelled = True
            if not frame.nowait:
                self._send(CHANNEL, spec.Basic.CancelOk(consumer_tag=frame.consumer_tag))
            self._close_connection("consumer cancelled", "cancelled by the broker")
            return True
        return False

    def _shut(self, why: str) -> None:
        super()._shut(why)
        if not self.stopped.done():
            self.stopped.set_result(self._closed or why)


def _tls_context(url: URL) -> ssl.SSLContext:
    """The TLS context of an ``amqps://`` URL, from the query options aiormq reads (so that
    both connections of the port trust, and present, the same certificates)."""
    query: Mapping[str, str] = url.query
    cadata = query.get("cadata")
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=query.get("cafile"),
        capath=query.get("capath"),
        cadata=base64.b64decode(cadata) if cadata else None,
    )
    if query.get("certfile"):
        context.load_cert_chain(query["certfile"], query.get("keyfile"))
    if query.get("no_verify_ssl", "0") != "0":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
