"""A lean AMQP 0-9-1 publisher in confirm mode, for the events of the RabbitMQ port.

Why not aio-pika/aiormq for the events, as for the rest of the RabbitMQ port: an event's
confirmed publication through aiormq cost 200-400 µs of CPU on this machine, one after
another as the relay publishes at a low rate (bench/bench_bus_publish.py; ~0.76 ms a UFTP
message for its two events in bench/bench_bus.py), against the 25% the bridge may add to a
message. Most of it is aiormq's general machinery, not the protocol: a `pamqp` frame object
per frame, marshalled one by one; a queue and a hand-over to its writer task per
publication; its reader task's `readexactly` per frame and pamqp objects for every
Basic.Ack; a dispatch through the channel's own reader task; locks, a `Countdown` and an
`asyncio.timeout` per publish. The options weighed:

1. encoding the whole publication at once while still publishing through aiormq: aiormq
   builds its own frames from pamqp objects, so all that can be shortened there is the
   properties' encoding, which the port already did for aiormq (20 of
   the 200-400 µs);
2. writing our own frames on aiormq's connection: needs its private writer queue, channel
   numbers and confirmation maps (their names and semantics changed within 7.x), and the
   reader side would still be aiormq's;
3. this module: a connection of its own, used for nothing but publishing events on one
   confirming channel, on an `asyncio.Protocol` (no reader or writer task): one
   `transport.write` of the publication encoded in one piece, one future, and the acks read
   straight out of `data_received` (an ack is a fixed 21-octet frame, decoded here without
   pamqp). Everything rare (the handshake, a Basic.Return's frames, a Channel.Close or
   Connection.Close from the broker) is decoded by pamqp, aio-pika's own codec, and the
   frames written are byte for byte what pamqp would write (a test compares them).
   Measured: 57-170 µs per event against 205-412 µs through aiormq, in the same runs on the
   shared machine, of which 40-90 µs are the floor of any asyncio client here (the loop's
   turns, `send` and `recv` on loopback); figures in bench/README.md.

The guarantees are those of the port (`adapter.bus.port`): `publish` returns on the broker's
Basic.Ack of that publication and raises `Unroutable` when a Basic.Return of it came first
(mandatory, no binding), `BusUnavailable` on a Basic.Nack, a lost connection, a closed
channel, a confirm that did not come within the timeout, and at once while the broker
blocks publishers (Connection.Blocked: nothing written then would be read). A lost
connection is not reopened here: the next `publish` of the port opens a new one (the relay
retries with backoff), so an outage costs no task and no loop.

Heartbeats are kept as AMQP 0-9-1 asks (section 4.2.7): one is sent when nothing else was
for half the negotiated interval, and a connection from which nothing arrived for three
intervals is dropped. Basic.Return carries no delivery tag, so a returned message is matched
to its publication by message id and routing key (the broker returns in publication order,
and the relay never has one event in flight twice); that is also how aiormq matches them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import platform
import ssl
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pamqp.frame
import pamqp.header
import pamqp.heartbeat
from pamqp import commands as spec
from pamqp.exceptions import UnmarshalingException
from yarl import URL

from adapter.bus.port import BusUnavailable, Unroutable

__all__ = ["ConfirmPublisher", "encode_publication"]

log = logging.getLogger(__name__)

#: Frame types and the frame end octet (AMQP 0-9-1, section 4.2.3).
_METHOD, _HEADER, _BODY, _HEARTBEAT = 1, 2, 3, 8
_FRAME_END = 0xCE
_FRAME = struct.Struct(">BHI")
#: The frame header, payload size and end octet around a payload: 8 octets (4.2.3).
_FRAME_OVERHEAD = 8
#: An ack's or nack's payload after its method index: delivery tag, then the flag bits.
_ACK_INDEX = spec.Basic.Ack.index
_NACK_INDEX = spec.Basic.Nack.index
_ACK_FRAME = struct.Struct(">BHII QB")  # type, channel, size, method index, tag, bits
_ACK_SIZE = _ACK_FRAME.size + 1
_CONTENT_HEADER = struct.Struct(">HHQ")  # class id (Basic), weight (0), body size
#: Basic.Publish's method index and its deprecated ``ticket`` (0).
_PUBLISH_PREFIX = struct.pack(">IH", spec.Basic.Publish.index, 0)
_BASIC_CLASS = 60
_HEARTBEAT_FRAME = pamqp.frame.marshal(pamqp.heartbeat.Heartbeat(), 0)

#: Our frame size limit, RabbitMQ's default: the broker may propose less.
FRAME_MAX = 131072
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
    header = _CONTENT_HEADER.pack(_BASIC_CLASS, 0, len(body)) + properties
    parts = [
        _FRAME.pack(_METHOD, channel, len(method)),
        method,
        b"\xce",
        _FRAME.pack(_HEADER, channel, len(header)),
        header,
        b"\xce",
    ]
    step = frame_max - _FRAME_OVERHEAD
    for start in range(0, len(body), step):
        chunk = body[start : start + step]
        parts += (_FRAME.pack(_BODY, channel, len(chunk)), chunk, b"\xce")
    return b"".join(parts)


@dataclass(slots=True)
class _Pending:
    """A publication awaiting its confirm."""

    future: asyncio.Future[str | None]
    message_id: str
    routing_key: str
    deadline: float
    #: The reply text of a Basic.Return of it, which comes before its ack.
    returned: str | None = None


class ConfirmPublisher(asyncio.Protocol):
    """One AMQP connection with one channel in confirm mode, publishing and nothing else.

    Open it with `open`; once it `is_closed` (lost, closed by the broker, a channel error)
    it stays so: open another."""

    def __init__(self, exchange: str, *, timeout: float) -> None:
        spec.Basic.Publish(exchange=exchange)  # pamqp's check of the name (length, octets)
        self._exchange = exchange.encode("utf-8")
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._pending: dict[int, _Pending] = {}
        self._tag = 0
        self._frame_max = FRAME_MAX
        self._heartbeat = 0.0
        self._last_sent = self._last_received = self._loop.time()
        self._ticker: asyncio.TimerHandle | None = None
        #: Until the channel is in confirm mode: the frames the handshake waits for.
        self._handshake: asyncio.Queue[tuple[int, Any]] | None = asyncio.Queue()
        #: A Basic.Return being read: its method frame, then its content header once read.
        self._return: spec.Basic.Return | None = None
        self._return_header: pamqp.header.ContentHeader | None = None
        self._return_left = 0
        #: Why the connection is unusable; None while it is open.
        self._closed: str | None = "not open"
        self._lost = self._loop.create_future()
        #: Why the broker stopped reading from us (Connection.Blocked, e.g. a memory or disk
        #: alarm), until Connection.Unblocked; None while it reads.
        self.blocked: str | None = None

    # -- opening and closing ------------------------------------------------------------

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
        """Connect to the broker at `url` (``amqp://`` or ``amqps://``, the query options of
        aiormq's TLS and ``heartbeat``), open a channel and put it in confirm mode. Raises
        `BusUnavailable`."""
        parsed = URL(url)
        publisher = cls(exchange, timeout=timeout)
        try:
            async with asyncio.timeout(connect_timeout):
                context = _tls_context(parsed) if parsed.scheme == "amqps" else None
                port = parsed.port or (5671 if context is not None else 5672)
                await publisher._loop.create_connection(
                    lambda: publisher, parsed.host or "localhost", port, ssl=context
                )
                await publisher._open(parsed, name)
        except BusUnavailable:
            publisher.abort()
            raise
        except (OSError, TimeoutError, UnmarshalingException, ValueError, ssl.SSLError) as exc:
            publisher.abort()
            raise BusUnavailable(f"cannot open the events connection: {exc!r}") from None
        except BaseException:
            publisher.abort()
            raise
        return publisher

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
                    "capabilities": {
                        "publisher_confirms": True,
                        "basic.nack": True,
                        "connection.blocked": True,
                        "authentication_failure_close": True,
                    },
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
        self._send(CHANNEL, spec.Confirm.Select())
        await self._expect(spec.Confirm.SelectOk)
        self._handshake = None
        self._closed = None
        self._schedule_tick()

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
            raise BusUnavailable(f"the events connection closed while opening: {self._closed}")
        _, frame = getter.result()
        if isinstance(frame, spec.Connection.Close):
            self._send(0, spec.Connection.CloseOk())
            raise BusUnavailable(
                f"the broker refused the events connection: {frame.reply_code} {frame.reply_text}"
            )
        if not isinstance(frame, kind):
            raise BusUnavailable(f"unexpected {frame.name} while opening the events connection")
        return frame

    async def close(self) -> None:
        """Close the connection politely (Connection.Close, then wait a moment for its
        CloseOk); what awaits a confirm gets `BusUnavailable`."""
        if self._transport is None or self._transport.is_closing():
            self._shut("closed")
            return
        if self._closed is None:
            self._send(
                0,
                spec.Connection.Close(
                    reply_code=200, reply_text="closing", class_id=0, method_id=0
                ),
            )
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

    # -- publishing ---------------------------------------------------------------------

    @property
    def frame_max(self) -> int:
        """The largest frame, in octets, agreed with the broker."""
        return self._frame_max

    @property
    def heartbeat(self) -> float:
        """The heartbeat interval agreed with the broker, in seconds (0: none)."""
        return self._heartbeat

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
                if available >= _ACK_SIZE:  # the usual frame: the ack of one publication
                    kind, channel, length, index, tag, bits = _ACK_FRAME.unpack_from(buffer, offset)
                    if (
                        kind == _METHOD
                        and length == 13
                        and index in (_ACK_INDEX, _NACK_INDEX)
                        and channel == CHANNEL
                        and buffer[offset + _ACK_SIZE - 1] == _FRAME_END
                    ):
                        offset += _ACK_SIZE
                        self._confirm(tag, bool(bits & 1), index == _NACK_INDEX)
                        continue
                kind, channel, length = _FRAME.unpack_from(buffer, offset)
                if length > self._frame_max:  # the limit both sides agreed (4.2.3)
                    raise UnmarshalingException("frame", f"a frame of {length} octets")
                end = offset + 7 + length
                if available < length + _FRAME_OVERHEAD:
                    break
                if buffer[end] != _FRAME_END:
                    raise UnmarshalingException("frame", "no frame end octet")
                frame = bytes(buffer[offset : end + 1])
                offset = end + 1
                self._on_frame(kind, frame)
        except (UnmarshalingException, ValueError, struct.error) as exc:
            log.warning("bus: dropping the events connection: undecodable frame (%s)", exc)
            self.abort()
        finally:
            del buffer[:offset]

    def _on_frame(self, kind: int, data: bytes) -> None:
        if kind == _HEARTBEAT:
            return
        if kind == _BODY and self._return_header is not None:
            self._return_left -= len(data) - _FRAME_OVERHEAD
            if self._return_left <= 0:
                self._returned()
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
        elif isinstance(frame, spec.Basic.Return):
            self._return = frame
        elif isinstance(frame, pamqp.header.ContentHeader) and self._return is not None:
            self._return_header = frame
            self._return_left = frame.body_size
            if frame.body_size == 0:
                self._returned()
        elif isinstance(frame, spec.Basic.Ack | spec.Basic.Nack):  # not in the usual form
            self._confirm(frame.delivery_tag, frame.multiple, isinstance(frame, spec.Basic.Nack))
        elif isinstance(frame, spec.Connection.Close):
            self._send(0, spec.Connection.CloseOk())
            self._shut(f"closed by the broker: {frame.reply_code} {frame.reply_text}")
            self._close_transport()
        elif isinstance(frame, spec.Channel.Close):
            self._send(CHANNEL, spec.Channel.CloseOk())
            self._shut(f"closed with its channel: {frame.reply_code} {frame.reply_text}")
            self._send(
                0,
                spec.Connection.Close(
                    reply_code=200, reply_text="channel closed", class_id=0, method_id=0
                ),
            )
            self._close_transport()
        elif isinstance(frame, spec.Connection.CloseOk):
            self._close_transport()
        else:
            log.debug("bus: ignored %s on the events connection", type(frame).__name__)

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

    # -- failure ------------------------------------------------------------------------

    def _shut(self, why: str) -> None:
        """Unusable from now on: what awaits a confirm gets `BusUnavailable`."""
        if self._closed is None or self._closed == "not open":
            self._closed = why
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(
                    BusUnavailable(f"the events connection was {why} before the confirm")
                )

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _schedule_tick(self) -> None:
        interval = min(1.0, self._timeout / 4)
        if self._heartbeat:
            interval = min(interval, self._heartbeat / 2)
        self._ticker = self._loop.call_later(max(interval, 0.05), self._tick)

    def _tick(self) -> None:
        """Heartbeats, both ways, and publications whose confirm is overdue."""
        self._ticker = None
        if self._closed is not None:
            return
        now = self._loop.time()
        if self._heartbeat:
            if now - self._last_received > self._heartbeat * _HEARTBEAT_GRACE:
                log.warning("bus: no heartbeat from the broker: dropping the events connection")
                self.abort()
                return
            if now - self._last_sent >= self._heartbeat / 2:
                self._write(_HEARTBEAT_FRAME)
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
        self._schedule_tick()


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
