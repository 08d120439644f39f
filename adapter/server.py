"""The HTTP endpoint and the inbound pipeline up to HTTP 200.

Order matters, and follows the spec's error table (message-transport-mechanism.md, "Error
handling"): transport checks on the request (411, 400, 413), the SignedMessage wrapper (400),
the sender's keys (419 when they cannot be looked up now, 401 when the sender is unknown),
the signature (401), the inner message (400), the sender's rate (429). Only then is the
message trusted enough to be stored, and only once it is stored does the sender get 200.
Everything after that (protocol checks' rejections, the handler, the response) happens
asynchronously, in the participant.

A peer can make this code answer 4xx but never 500: every failure it can cause is a
`TransportError` with its status, and anything else is a bug, logged, and answered 500 with
no detail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .directory import Directory
from .store.base import EventRecord, InboundRecord, SaveOutcome, Store
from .uftp import codec, envelope
from .uftp.errors import (
    BadContentType,
    BodyIncomplete,
    InvalidSignature,
    LengthRequired,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    TransportError,
)
from .uftp.messages import PayloadMessage, Role
from .uftp.rules import protocol_rejections

if TYPE_CHECKING:
    from .bus.port import BusHealth

#: The bus events of an accepted inbound message (the bus bridge's `inbound_events`).
InboundEvents = Callable[[PayloadMessage, bytes, Role], Awaitable[Sequence[EventRecord]]]

log = logging.getLogger(__name__)

ACCEPTED_CONTENT_TYPES = frozenset({"text/xml", "application/xml"})
#: Bodies above this size are verified and parsed on a worker thread, so that one large
#: portfolio update does not stall every other request on the event loop.
THREAD_THRESHOLD = 256 * 1024


def message_path(version_major: int) -> str:
    """URL path for a major Version (spec: "Version coupled to URL")."""
    return f"/shapeshifter/api/v{version_major}/message"


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


@dataclass(frozen=True, slots=True)
class _Opened:
    sender_domain: str
    sender_role: Role
    inner_xml: bytes
    message: PayloadMessage
    #: SHA-256 of the inner XML: what "the same message" means for duplicates.
    content_hash: bytes


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
        max_body_bytes: int,
        rate_limiter: RateLimiter | None = None,
        read_timeout: float = 30.0,
        time_stamp_window: tuple[timedelta, timedelta] | None = None,
    ) -> None:
        self._domain = domain
        self._role = role
        self._versions = versions
        self._directory = directory
        self._store = store
        self._clock = clock
        self._on_received = on_received
        self._max_body = max_body_bytes
        self._rate = rate_limiter
        self._read_timeout = read_timeout
        #: (how old, how far ahead) a TimeStamp may be; None: any.
        self._time_stamp_window = time_stamp_window
        self.serving = False
        #: Set by the bus bridge: events stored with each accepted message, and its health.
        self.events: InboundEvents | None = None
        self.bus_health: Callable[[], BusHealth] | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        majors = sorted({int(v.split(".")[0]) for v in self._versions})
        for major in majors:
            app.router.add_post(message_path(major), partial(self.handle_post, major=major))
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/health/bus", self.handle_bus_health)
        return app

    async def handle_health(self, request: web.Request) -> web.Response:
        """The endpoint's health; with a bus, a line on it too. A broker outage does not make
        the endpoint unhealthy (its peers are still served); `/health/bus` says 503 then."""
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

    async def handle_post(self, request: web.Request, *, major: int) -> web.Response:
        try:
            received = await self._receive(request, major)
        except TransportError as exc:
            log.info(
                "inbound refused: HTTP %d %s (from %s)", exc.status, exc.detail, request.remote
            )
            return web.Response(status=exc.status, text=exc.detail + "\n")
        except Exception:
            log.exception("inbound failed unexpectedly")
            return web.Response(status=500, text="internal error\n")
        result = self._on_received(received)
        if result is not None:
            await result
        return web.Response(text="OK\n")

    async def _receive(self, request: web.Request, major: int) -> Received:
        # Transport checks, in the order of the spec's table.
        if request.content_length is None:
            raise LengthRequired("Content-Length is required")
        if request.content_type not in ACCEPTED_CONTENT_TYPES:
            raise BadContentType(f"Content-Type must be text/xml, not {request.content_type}")
        charset = request.charset
        if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise BadContentType(f"the charset must be UTF-8, not {charset}")
        if request.content_length > self._max_body:
            raise PayloadTooLarge(f"the body exceeds {self._max_body} bytes")
        try:
            async with asyncio.timeout(self._read_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise PayloadTooLarge(f"the body exceeds {self._max_body} bytes") from None
        except TimeoutError:
            raise RequestTimeout("the body was not received in time") from None
        except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            # The sender went away mid-body: nothing to answer, and nothing wrong here.
            raise BodyIncomplete("the connection closed before the body was complete") from None

        large = len(body) > THREAD_THRESHOLD
        if large:
            signed = await asyncio.to_thread(envelope.parse_envelope, body)
        else:
            signed = envelope.parse_envelope(body)
        peer = await self._directory.lookup(signed.sender_domain, signed.sender_role)
        if peer is None:
            raise InvalidSignature(
                f"unknown sender {signed.sender_domain} in role {signed.sender_role}"
            )
        if large:
            opened = await asyncio.to_thread(_open, signed, peer.signing_keys)
        else:
            opened = _open(signed, peer.signing_keys)
        if self._rate is not None and not self._rate.allow(signed.sender_domain):
            raise RateLimited(f"{signed.sender_domain} is over its message rate")

        message = opened.message
        rejections = protocol_rejections(
            message,
            envelope_sender_domain=signed.sender_domain,
            envelope_sender_role=signed.sender_role,
            own_domain=self._domain,
            own_role=self._role,
            # Each major Version has its own URL path (spec: "Version coupled to URL"):
            # a 4.x message posted to the v3 path is not one this path supports.
            supported_versions=tuple(v for v in self._versions if int(v.split(".")[0]) == major),
            barred=peer.barred,
            now=self._clock(),
            time_stamp_window=self._time_stamp_window,
        )
        now = self._clock()
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
        )
        events: Sequence[EventRecord] = ()
        if self.events is not None and not rejections:
            events = await self.events(message, opened.inner_xml, signed.sender_role)
        outcome = await self._store.save_inbound(record, events=events)
        log.info(
            "inbound %s %s conversation %s from %s (%s): %s%s",
            message.xml_name,
            message.message_id,
            message.conversation_id,
            signed.sender_domain,
            signed.sender_role,
            outcome.value,
            f", to be rejected: {record.rejection}" if record.rejection else "",
        )
        log.debug("inbound %s body: %r", message.message_id, opened.inner_xml)
        return Received(
            message=message,
            sender_domain=signed.sender_domain,
            sender_role=signed.sender_role,
            envelope=body,
            inner_xml=opened.inner_xml,
            received_at=now,
            rejections=tuple(rejections),
            outcome=outcome,
        )


def _open(signed: envelope.SignedMessage, keys: tuple[bytes, ...]) -> _Opened:
    """Verify, then parse: nothing inside the Body is read before the signature checks out."""
    inner = envelope.open_sealed(signed.sealed, keys)
    message = codec.decode(inner)
    digest = hashlib.sha256(inner).digest()
    return _Opened(signed.sender_domain, signed.sender_role, inner, message, digest)
