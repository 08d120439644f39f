"""The endpoint's connections: how many it keeps, and for how long one may send no request.

aiohttp keeps an idle connection for an hour and gives a request's head no time limit: a few
hundred connections that send nothing, or a header line now and then, stay open until the
process runs out of them. Here:

- a connection delivers a complete request head within `header_timeout` seconds of opening,
  and of its first byte after a response, or is closed (the same bound as other HTTP servers'
  header timeouts; a sender writes its head at once);
- between requests, an idle connection is closed after the keep-alive timeout (aiohttp's own
  timer, which `Endpoint.runner` sets);
- at most `max_connections` are open at once. A connection over the cap closes the oldest one
  that has no request in progress - idle, or still sending its head - so that connections
  that send nothing never keep a sender out. When every connection is busy with a request,
  the new one is answered 503 with Retry-After and closed: a sender retries a 5xx later
  (message-transport-mechanism.md, "Transmission").

The connection's protocol stands between the event loop's transport and aiohttp's request
handler, passing everything through; `track_requests` tells it when a request starts and ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)


def _busy_response() -> bytes:
    body = b"too many connections, retry\n"
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s"
    ) % (len(body), body)


#: What a connection over the cap gets when no connection can make room for it.
BUSY_RESPONSE = _busy_response()


class Connections:
    """The open connections of one endpoint, oldest first."""

    def __init__(self, *, max_connections: int, header_timeout: float) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self._max = max_connections
        self._header_timeout = header_timeout
        #: Open connections in the order they opened (a dict keeps it, and removes in O(1)).
        self._open: dict[_Connection, None] = {}

    def __len__(self) -> int:
        return len(self._open)

    def factory(self, handlers: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for `loop.create_server`, around aiohttp's `handlers`."""

        def accept() -> asyncio.Protocol:
            if len(self._open) >= self._max and not self._make_room():
                log.debug("connection refused: %d connections, all busy", len(self._open))
                return _Busy()
            return _Connection(self, handlers(), self._header_timeout)

        return accept

    def _make_room(self) -> bool:
        """Close the oldest connection without a request in progress; False if there is none."""
        for connection in self._open:
            if not connection.busy:
                log.debug("closing an idle connection to make room for a new one")
                self._open.pop(connection)
                connection.close()
                return True
        return False


@web.middleware
async def track_requests(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """aiohttp middleware: marks the request's connection busy while the request is handled
    (and so neither timed out for its head nor closed to make room)."""
    transport = request.transport
    connection = transport.get_protocol() if transport is not None else None
    if not isinstance(connection, _Connection):
        return await handler(request)
    connection.request_started()
    try:
        return await handler(request)
    finally:
        connection.request_finished()


class _Connection(asyncio.Protocol):
    """One connection: passes everything to aiohttp's handler, and keeps the header timer."""

    def __init__(
        self, connections: Connections, handler: asyncio.Protocol, header_timeout: float
    ) -> None:
        self._connections = connections
        self._handler = handler
        self._header_timeout = header_timeout
        self._transport: asyncio.BaseTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        #: The loop time the timer is armed for.
        self._armed_for = 0.0
        #: When the head now awaited began (loop time): the connection opened, or the first
        #: byte after a response came; None while a request is handled or none has begun.
        self._head_since: float | None = None
        #: A request is being handled: the connection is not closed to make room.
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._connections._open[self] = None
        self._head_started()
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy and self._head_since is None:
            self._head_started()  # the first byte of the next request's head
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._connections._open.pop(self, None)
        self._transport = None
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def request_started(self) -> None:
        self.busy = True
        self._head_since = None  # the timer, if armed, finds no head due when it fires

    def request_finished(self) -> None:
        self.busy = False  # the head's clock starts again with the next byte

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _head_started(self) -> None:
        """Start the head's clock; arm the timer unless it is armed already.

        A timer is not made and cancelled for every request of a kept-alive connection (a
        TimerHandle, a heap push, a cancellation per message): the one armed stays, and when it
        fires it looks at the head then awaited, if any, and is armed again for its due time."""
        self._head_since = self._loop.time()
        if self._timer is None:
            self._arm(self._head_since + self._header_timeout)

    def _arm(self, due: float) -> None:
        self._armed_for = due
        self._timer = self._loop.call_at(due, self._check_head)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_head(self) -> None:
        self._timer = None
        if self._head_since is None:
            return  # a request is handled, or the connection waits for its next byte
        due = self._head_since + self._header_timeout
        if due > self._armed_for:  # this head began after the timer was armed
            self._arm(due)
            return
        log.debug("closing a connection that sent no request head in %g s", self._header_timeout)
        self.close()


class _Busy(asyncio.Protocol):
    """A connection over the cap while every other one is busy: 503, then closed.

    Closing at once while the request still arrives would reset the connection and lose the
    answer on the way; so the answer is followed by the end of our side, what arrives is
    dropped, and the connection closes when the sender ends its side, or after a second.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(BUSY_RESPONSE)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request nobody will read

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


#: How long a refused connection's request is read and dropped before it is closed.
_LINGER_S = 1.0
