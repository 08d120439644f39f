"""The HTTP endpoint: the edge that reads a request and drives the core's inbound decision
(`adapter.uftp.inbound`) up to HTTP 200.

Order matters, and follows the spec's error table (message-transport-mechanism.md, "Error
handling"): transport checks on the request (411, 400, 415, 413), the SignedMessage wrapper
(400), the sender's keys (419 when they cannot be looked up now, 401 when the sender is
unknown), the signature (401), the inner message (400), the sender's rate (429). Only then is
the message trusted enough to be stored, and only once it is stored does the sender get 200.
Everything after that (protocol checks' rejections, the handler, the response) happens
asynchronously, in the participant. The rules of each step are the core's; what is here is
what needs I/O or state: the connection limits, the budget of bodies in flight, reading the
body, the directory, the rate limiter, the store and the log.

A peer can make this code answer 4xx but never 500: every failure it can cause is a
`TransportError` with its status, and anything else is a bug, logged, and answered 500 with
no detail.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from ssl import SSLContext
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import hdrs, web, web_response
from aiohttp.http_exceptions import HttpProcessingError

from .bulk import LARGE_MESSAGES, large_buffers_unmapped
from .connections import Connections, track_requests
from .directory import Directory, Peer
from .ops.observer import NULL_OBSERVER, UNKNOWN_PEER, Observer
from .printable import printable
from .settings import Limits
from .store.base import EventRecord, InboundRecord, InboundStatus, SaveOutcome, Store
from .uftp import envelope, inbound
from .uftp.errors import (
    BodyIncomplete,
    InvalidSignature,
    RateLimited,
    RequestTimeout,
    ServerBusy,
    TransportError,
)
from .uftp.inbound import ACCEPTED_CONTENT_TYPES as ACCEPTED_CONTENT_TYPES
from .uftp.inbound import message_path as message_path
from .uftp.messages import PayloadMessage, Role

if TYPE_CHECKING:
    from .bus.port import BusHealth
    from .oauth2_inbound import BearerCheck

#: The bus events of an accepted inbound message (the bus bridge's `inbound_events`).
InboundEvents = Callable[[PayloadMessage, bytes, Role], Awaitable[Sequence[EventRecord]]]

log = logging.getLogger(__name__)

#: How much of a refusal is logged: its reason at info level, its detail (which a peer can
#: make 64 KB long) at debug level.
REASON_LOGGED = 200
DETAIL_LOGGED = 1000
#: The Server header of every response: the product, without the versions of Python and
#: aiohttp that aiohttp writes there (they only help to pick an exploit). Set where aiohttp
#: reads it, so that its own answers to malformed requests carry it too.
SERVER_NAME = "uftp-adapter"
web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]  # imported there
#: Bodies above this size are verified and parsed on a worker thread, so that one large
#: portfolio update does not stall every other request on the event loop; their inner
#: message is read with the help of `bulk.LARGE_MESSAGES` (validated on another thread
#: while it is read, with the collector paused) once it is large enough for that to pay.
THREAD_THRESHOLD = 256 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    """A verified, schema-valid, stored inbound message, ready for the handler stage."""

    message: PayloadMessage
    sender_domain: str
    sender_role: Role
    envelope: bytes
    inner_xml: bytes
    received_at: datetime
    #: Reasons the protocol checks found; empty when the message may go to its handler.
    rejections: tuple[str, ...]
    outcome: SaveOutcome
    #: Stored handled at once by this POST (`Endpoint.settles`): nothing to finish in the
    #: store after its handling. False when the POST stored nothing (a copy).
    settled: bool = False


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse at ERROR, with a traceback quoting the bytes it
    choked on, which may be a peer's message body (connection identifiers are personal data).
    A peer's malformed request is not our failure: keep one line at info, without the bytes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = (
                "malformed HTTP request refused: %s %s",
                (
                    exc.code,
                    type(exc).__name__,
                ),
            )
            record.exc_info = record.exc_text = None
        return True


_AIOHTTP_SERVER_LOG = logging.getLogger("aiohttp.server")
if not any(isinstance(f, _MalformedRequests) for f in _AIOHTTP_SERVER_LOG.filters):
    _AIOHTTP_SERVER_LOG.addFilter(_MalformedRequests())


class BodyBudget:
    """Bytes of request bodies being received and checked at once, across all connections.

    The body cap bounds one request; this bounds them all together, so that a few senders of
    large envelopes (known or not) cannot take the memory of the process between them. A body
    that does not fit now is answered 503 at once rather than queued: waiting would hold its
    connection, and the sender retries a 5xx later anyway.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the budget for bodies in flight must be positive, got {limit}")
        self._limit = limit
        self._taken = 0

    def take(self, size: int) -> bool:
        if self._taken + size > self._limit:
            return False
        self._taken += size
        return True

    def give_back(self, size: int) -> None:
        self._taken -= size


@dataclass(slots=True)
class _Progress:
    """How far a request got: what it took of the `BodyBudget`, to be given back once it is
    answered, and who its envelope says sent it, to log a refusal as it deserves."""

    bytes: int = 0
    #: The envelope's SenderDomain and SenderRole, once it is read (not verified).
    sender: tuple[str, Role] | None = None
    #: Whether that domain is one of our configured peers.
    peer: bool = False


class RateLimiter:
    """A token bucket per sender: `rate` messages a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True


class Endpoint:
    """The aiohttp application of one participant."""

    def __init__(
        self,
        *,
        domain: str,
        role: Role,
        versions: tuple[str, ...],
        directory: Directory,
        store: Store,
        clock: Callable[[], datetime],
        on_received: Callable[[Received], Awaitable[None] | None],
        limits: Limits | None = None,
    ) -> None:
        limits = limits or Limits()
        self._directory = directory
        self._store = store
        self._clock = clock
        self._on_received = on_received
        self._max_body = limits.max_body_bytes
        self._rate = RateLimiter(*limits.rate_limit) if limits.rate_limit else None
        self._read_timeout = limits.read_timeout_seconds
        #: Who a message must be addressed to, by the major Version of the path it came by.
        self._receivers = {
            major: inbound.Receiver.on_path(domain, role, versions, major, limits.time_stamp_window)
            for major in {inbound.major(v) for v in versions}
        }
        self._keepalive_timeout = limits.keepalive_timeout_seconds
        self._header_timeout = limits.header_timeout_seconds
        self._connections = Connections(
            max_connections=limits.max_connections, header_timeout=self._header_timeout
        )
        self._bodies = BodyBudget(limits.body_bytes_in_flight)
        self.serving = False
        #: Set by the bus bridge: events stored with each accepted message, and its health.
        self.events: InboundEvents | None = None
        self.bus_health: Callable[[], BusHealth] | None = None
        #: Told of every POST's outcome (`adapter.ops.observer`).
        self.observer: Observer = NULL_OBSERVER
        #: Set by the participant: whether a message from a sender (verified, no protocol
        #: rejection) needs no handling that must outlive this process, so that it is stored
        #: handled at once and not finished by a statement of its own after its handling.
        self.settles: Callable[[PayloadMessage, str], bool] | None = None
        #: Set when [oauth2_inbound] asks for bearer tokens: checked before the body is
        #: read, in addition to the signature (`adapter.oauth2_inbound`).
        self.bearer: BearerCheck | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, middlewares=[track_requests])
        for major in sorted(self._receivers):
            app.router.add_post(message_path(major), partial(self.handle_post, major=major))
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/health/bus", self.handle_bus_health)
        app.router.add_get("/ready", self.handle_ready)
        return app

    def runner(self) -> web.AppRunner:
        """The aiohttp runner of `application()`, set up as the endpoint needs it.

        Request bodies are read as they were sent: aiohttp would otherwise inflate a body sent
        with a Content-Encoding as it arrives (and while it discards one it refused), beyond
        what the body cap counts. Such a request is refused with 415 unread.
        """
        return web.AppRunner(
            self.application(),
            access_log=None,
            auto_decompress=False,
            keepalive_timeout=self._keepalive_timeout,
        )

    async def listen(
        self, runner: web.AppRunner, sockets: Sequence[socket.socket], ssl: SSLContext | None
    ) -> list[asyncio.Server]:
        """Serve `runner` (set up) on the bound `sockets`, within the connection limits.

        The sockets are bound beforehand (`adapter.listen.bind`), so that a participant that
        cannot listen fails before it does anything else. Close the servers before cleaning
        up the runner: the runner closes the connections.
        """
        handlers = runner.server
        if handlers is None:
            raise RuntimeError("the runner is not set up")
        large_buffers_unmapped()  # peers' bodies: their memory back when freed (adapter.bulk)
        loop = asyncio.get_running_loop()
        return [
            await loop.create_server(
                self._connections.factory(handlers),
                sock=sock,
                ssl=ssl,
                # A TLS handshake is bounded like a request head: it precedes one.
                ssl_handshake_timeout=self._header_timeout if ssl is not None else None,
            )
            for sock in sockets
        ]

    async def handle_health(self, request: web.Request) -> web.Response:
        """Alive: the process answers (200 while starting and stopping too). With a bus, a
        line on it: a broker outage does not make the endpoint unhealthy (its peers are still
        served); `/health/bus` says 503 then."""
        text = "ok\n" if self.serving else "starting\n"
        if self.bus_health is not None:
            text += f"bus: {self.bus_health().detail}\n"
        return web.Response(text=text)

    async def handle_bus_health(self, request: web.Request) -> web.Response:
        """200 while connected to the broker and consuming commands (if configured), else
        503: for monitoring the bridge."""
        if self.bus_health is None:
            return web.Response(status=404, text="no bus configured\n")
        health = self.bus_health()
        status = 200 if health.connected and health.consuming else 503
        return web.Response(status=status, text=f"{health.detail}\n")

    async def handle_ready(self, request: web.Request) -> web.Response:
        """Ready: the store is open, the port bound, messages are taken (503 otherwise, as
        while stopping), so that a load balancer sends nothing to a process that would not
        take it."""
        if self.serving:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def handle_post(self, request: web.Request, *, major: int) -> web.Response:
        progress = _Progress()
        try:
            received = await self._receive(request, major, progress)
        except TransportError as exc:
            self._log_refusal(exc, request, progress)
            peer = progress.sender[0] if progress.sender and progress.peer else UNKNOWN_PEER
            self.observer.refused(type(exc).__name__, peer)
            self.observer.http_response(exc.status)
            return web.Response(
                status=exc.status, text=exc.detail + "\n", headers=dict(exc.headers)
            )
        except Exception:
            log.exception("inbound failed unexpectedly")
            self.observer.http_response(500)
            return web.Response(status=500, text="internal error\n")
        finally:
            self._bodies.give_back(progress.bytes)
        result = self._on_received(received)
        if result is not None:
            await result
        self.observer.http_response(200)
        return web.Response(text="OK\n")

    def _log_refusal(self, exc: TransportError, request: web.Request, progress: _Progress) -> None:
        """Log a refusal: at warning level when the envelope names one of our peers (a wrong
        key or a message it cannot get right is something to fix on one side or the other, and
        may be all its operator sees of a lost response), at info level otherwise - an
        unknown sender is the internet's noise. The detail may quote the peer's message (its
        values, its SenderDomain before anything is verified): escaped, cut short, and in
        full only at debug level."""
        if progress.sender is None:
            sender = f"from {request.remote}"
        else:
            domain, role = progress.sender
            kind = "peer" if progress.peer else "unknown sender"
            sender = f"from {kind} {printable(domain, REASON_LOGGED)} ({role}, {request.remote})"
        log.log(
            logging.WARNING if progress.peer else logging.INFO,
            "inbound refused %s: HTTP %d %s: %s",
            sender,
            exc.status,
            type(exc).__name__,
            printable(exc.reason, REASON_LOGGED),
        )
        log.debug("inbound refused, detail: %s", printable(exc.detail, DETAIL_LOGGED))

    @staticmethod
    async def _open(
        signed: envelope.SignedMessage, peer: Peer | None, large: bool
    ) -> inbound.Opened:
        if large:
            return await asyncio.to_thread(
                partial(inbound.open_message, signed, peer, bulk=LARGE_MESSAGES)
            )
        return inbound.open_message(signed, peer)

    async def _receive(self, request: web.Request, major: int, progress: _Progress) -> Received:
        if self.bearer is not None:
            await self.bearer.check(request.headers.get(hdrs.AUTHORIZATION))
        inbound.check_transport(
            inbound.RequestHead(
                content_length=request.content_length,
                content_type=request.content_type,
                charset=request.charset,
                content_encodings=tuple(request.headers.getall(hdrs.CONTENT_ENCODING, ())),
            ),
            max_body_bytes=self._max_body,
        )
        length = request.content_length
        assert length is not None  # refused above otherwise
        if not self._bodies.take(length):
            raise ServerBusy("too many request bodies are being received, retry")
        progress.bytes = length
        try:
            if request.content.is_eof():
                # The whole body came with the head, as a small message's does: taken as it
                # is, without a timer to arm and cancel nor a copy.
                body = _buffered_body(request.content, length)
            else:
                async with asyncio.timeout(self._read_timeout):
                    body = await _read_body(request.content, length)
        except TimeoutError:
            raise RequestTimeout("the body was not received in time") from None
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientConnectionError,
        ):
            # The sender went away mid-body: nothing to answer, and nothing wrong here.
            raise BodyIncomplete("the connection closed before the body was complete") from None

        large = len(body) > THREAD_THRESHOLD
        if large:
            signed = await asyncio.to_thread(inbound.read_envelope, body)
        else:
            signed = inbound.read_envelope(body)
        progress.sender = (signed.sender_domain, signed.sender_role)
        try:
            peer = await self._directory.lookup(signed.sender_domain, signed.sender_role)
        except TransportError:  # (419: its keys cannot be looked up now)
            progress.peer = bool(self._directory.roles_of(signed.sender_domain))
            raise
        # Whether the envelope names one of our peers, in any role, to log a refusal as it
        # deserves; asked of the directory only when the lookup did not answer it already.
        progress.peer = peer is not None or bool(self._directory.roles_of(signed.sender_domain))
        try:
            opened = await self._open(signed, peer, large)
        except InvalidSignature:
            # The keys may be cached ones the sender has just rotated away from: its source
            # is asked once more before the 401 (spec footnote 17 keeps both keys published
            # for a while; a cache may still hold the old record alone).
            fresh = await self._directory.refresh(signed.sender_domain, signed.sender_role)
            if fresh is None or fresh == peer:
                raise
            opened = await self._open(signed, fresh, large)
        if self._rate is not None and not self._rate.allow(signed.sender_domain):
            raise RateLimited(f"{signed.sender_domain} is over its message rate")

        message = opened.message
        now = self._clock()
        rejections = inbound.rejections(opened, self._receivers[major], now=now)
        settled = (
            not rejections
            and self.settles is not None
            and self.settles(message, signed.sender_domain)
        )
        record = InboundRecord(
            sender_domain=signed.sender_domain,
            message_id=message.message_id,
            sender_role=signed.sender_role.value,
            message_type=message.xml_name,
            conversation_id=message.conversation_id,
            version=message.version,
            content_hash=opened.content_hash,
            envelope=body,
            received_at=now,
            rejection="; ".join(rejections) or None,
            status=InboundStatus.HANDLED if settled else InboundStatus.RECEIVED,
        )
        events: Sequence[EventRecord] = ()
        if self.events is not None and not rejections:
            events = await self.events(message, opened.inner_xml, signed.sender_role)
        outcome = await self._store.save_inbound(record, events=events)
        # The sender is verified, so one of our peers: a bounded label.
        self.observer.received(
            message.xml_name,
            signed.sender_domain,
            "rejected" if rejections and outcome is SaveOutcome.NEW else outcome.value,
        )
        if log.isEnabledFor(logging.INFO):  # its arguments are not worked out for nothing
            log.info(
                "inbound %s from %s (%s): %s%s",
                message.xml_name,
                signed.sender_domain,
                signed.sender_role,
                outcome.value,
                f", to be rejected: {record.rejection}" if record.rejection else "",
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "inbound %s is %s, conversation %s",
                    message.xml_name,
                    message.message_id,
                    message.conversation_id,
                )
                log.debug("inbound %s body: %r", message.message_id, opened.inner_xml)
        return Received(
            message=message,
            sender_domain=signed.sender_domain,
            sender_role=signed.sender_role,
            envelope=body,
            inner_xml=opened.inner_xml,
            received_at=now,
            rejections=rejections,
            outcome=outcome,
            settled=settled and outcome is SaveOutcome.NEW,
        )


def _buffered_body(content: aiohttp.StreamReader, length: int) -> bytes:
    """The body of a request whose payload has ended (`content.is_eof()`): the bytes in the
    buffer, in one piece when they came in one. Raises `asyncio.IncompleteReadError` when
    they fall short of `length` (the sender stopped short), as `_read_body` does."""
    body = content.read_nowait()
    if len(body) != length:
        raise asyncio.IncompleteReadError(body, length)
    return body


async def _read_body(content: aiohttp.StreamReader, length: int) -> bytes:
    """Exactly `length` bytes, copied into one buffer as they arrive.

    `request.read()` holds a body up to three times over while it grows (its buffer, a
    bytearray, the bytes) and a list of chunks joined at the end twice: this holds the buffer
    and, for the moment of the last copy, the bytes. Raises `asyncio.IncompleteReadError` when
    the sender stops short.
    """
    buffer = bytearray(length)
    view = memoryview(buffer)
    received = 0
    while received < length:
        chunk = await content.readany()
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(view[:received]), length)
        view[received : received + len(chunk)] = chunk
        received += len(chunk)
    view.release()
    return bytes(buffer)
