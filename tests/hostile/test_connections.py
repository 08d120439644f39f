"""Connections that send nothing, or their request's head a line at a time, and more bodies
at once than the endpoint takes: against a running CRO (tests/hostile/harness.py), over raw
sockets.

The answers: a connection is closed when its request's head is not complete within the header
timeout, and when it idles between requests beyond the keep-alive timeout; idle connections
over the connection cap make room for new ones, so that they never keep a sender out; a
connection that finds every other one busy, and a body that does not fit in the budget for
bodies in flight, get 503 with Retry-After - which a sender retries (5xx is temporary in
message-transport-mechanism.md, "Transmission"), as the DSO's outbox does here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from adapter.testing import Network
from adapter.uftp.messages import Result

from .harness import ANSWER_WITHIN_S, CRO, READ_TIMEOUT_S, Harness, read_head, start, status_of

#: The timeouts of these tests' CRO (the defaults are 10 s and 30 s).
HEADER_TIMEOUT_S = 1.0
KEEPALIVE_TIMEOUT_S = 1.0
#: How late a close may come after its timeout (the event loop is shared with the test).
LATE_S = 1.5

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def connection(h: Harness) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()


async def closed_after(reader: asyncio.StreamReader, *, within: float) -> float | None:
    """Seconds until the server closes the connection (reading and dropping whatever it
    sends); None when it is still open after `within` seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - started


def head(h: Harness, *, length: int | None = None, path: str | None = None) -> bytes:
    lines = [f"POST {path or h.path} HTTP/1.1", f"Host: 127.0.0.1:{h.port}"]
    if length is not None:
        lines += ["Content-Type: text/xml; charset=utf-8", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# ============================================================================================
# Time
# ============================================================================================


async def test_a_request_head_sent_a_line_at_a_time_is_cut_off(network: Network) -> None:
    """Slowloris: a header line every 0.2 s, never the blank line that ends the head -> the
    connection is closed once the header timeout has passed, while others are served."""
    h = await start(network, header_timeout_seconds=HEADER_TIMEOUT_S)
    async with connection(h) as (reader, writer):
        writer.write(f"POST {h.path} HTTP/1.1\r\n".encode())

        async def trickle() -> None:
            for n in range(100):
                await asyncio.sleep(0.2)
                writer.write(f"X-Slow-{n}: x\r\n".encode())

        sender = asyncio.ensure_future(trickle())
        try:
            await h.assert_still_serving()
            seconds = await closed_after(reader, within=HEADER_TIMEOUT_S + 5)
        finally:
            sender.cancel()
    assert seconds is not None, "the slow head was still being received"
    assert seconds < HEADER_TIMEOUT_S + LATE_S
    await h.assert_still_serving(handled_before=1)


async def test_a_connection_that_sends_nothing_is_closed(network: Network) -> None:
    h = await start(network, header_timeout_seconds=HEADER_TIMEOUT_S)
    async with connection(h) as (reader, _):
        seconds = await closed_after(reader, within=HEADER_TIMEOUT_S + 5)
    assert seconds is not None, "a silent connection was kept"
    assert HEADER_TIMEOUT_S - 0.1 <= seconds < HEADER_TIMEOUT_S + LATE_S


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(network: Network) -> None:
    h = await start(
        network, keepalive_timeout_seconds=KEEPALIVE_TIMEOUT_S, header_timeout_seconds=30.0
    )
    async with connection(h) as (reader, writer):
        writer.write(HEALTH)
        assert status_of(await read_head(reader)) == 200
        seconds = await closed_after(reader, within=KEEPALIVE_TIMEOUT_S + 5)
    assert seconds is not None, "an idle keep-alive connection was kept"
    assert seconds < KEEPALIVE_TIMEOUT_S + LATE_S


async def test_the_header_timeout_counts_from_the_next_requests_first_byte(
    network: Network,
) -> None:
    """Idling between requests is the keep-alive timeout's business: a connection idle for
    longer than the header timeout then sends a head, slowly, and is cut off a header
    timeout after that head's first byte."""
    h = await start(
        network, header_timeout_seconds=HEADER_TIMEOUT_S, keepalive_timeout_seconds=30.0
    )
    async with connection(h) as (reader, writer):
        writer.write(HEALTH)
        assert status_of(await read_head(reader)) == 200
        assert await closed_after(reader, within=HEADER_TIMEOUT_S + 0.5) is None
        writer.write(b"GET /health HTTP/1.1\r\n")
        seconds = await closed_after(reader, within=HEADER_TIMEOUT_S + 5)
    assert seconds is not None
    assert seconds < HEADER_TIMEOUT_S + LATE_S


async def test_a_head_begun_while_the_timer_runs_for_an_earlier_one_gets_its_own_time(
    network: Network,
) -> None:
    """The head timer is not made anew for each request of a kept-alive connection: the one
    armed when the connection opened is still running when the next head begins, half a
    timeout later. When it fires, that head has had half its time: the connection stays open
    until the head's own timeout has passed, then is cut off."""
    h = await start(
        network, header_timeout_seconds=HEADER_TIMEOUT_S, keepalive_timeout_seconds=30.0
    )
    async with connection(h) as (reader, writer):
        writer.write(HEALTH)
        assert status_of(await read_head(reader)) == 200
        await asyncio.sleep(HEADER_TIMEOUT_S / 2)
        writer.write(b"GET /health HTTP/1.1\r\n")
        seconds = await closed_after(reader, within=HEADER_TIMEOUT_S + 5)
    assert seconds is not None, "the slow head was still being received"
    assert HEADER_TIMEOUT_S - 0.1 <= seconds < HEADER_TIMEOUT_S + LATE_S


# ============================================================================================
# Numbers
# ============================================================================================


async def test_300_idle_connections_do_not_keep_a_sender_out(network: Network) -> None:
    """300 connections that send nothing, with room for 100: the oldest idle ones are closed
    to make room, and a valid update is served at once."""
    h = await start(network, max_connections=100)
    idle = [await asyncio.open_connection("127.0.0.1", h.port) for _ in range(300)]
    try:
        started = time.monotonic()
        await h.assert_still_serving()
        assert time.monotonic() - started < ANSWER_WITHIN_S
        closed = await asyncio.gather(*(closed_after(r, within=0.5) for r, _ in idle))
        assert sum(seconds is not None for seconds in closed) >= 200
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_connection_that_finds_every_other_one_busy_gets_503(network: Network) -> None:
    """Four connections in the middle of a body fill a cap of four: a fifth is answered 503
    with Retry-After; once their bodies time out (408), a valid update is served."""
    h = await start(network, max_connections=4)
    busy = [await asyncio.open_connection("127.0.0.1", h.port) for _ in range(4)]
    try:
        for _, writer in busy:
            writer.write(head(h, length=10_000) + b"<" * 100)
        await asyncio.sleep(0.2)
        response = await h.raw(head(h, length=len(body := h.seal(h.update()))), [body])
        assert response.status == 503, response.head
        assert b"\r\nretry-after: 1\r\n" in response.head.lower()
        answers = await asyncio.gather(*(read_head(r) for r, _ in busy))
        assert [status_of(answer) for answer in answers] == [408] * 4
    finally:
        for _, writer in busy:
            writer.close()
    await h.assert_still_serving()


async def test_bodies_over_the_budget_get_503_and_the_sender_retries(network: Network) -> None:
    """Two 64 KiB bodies arriving slowly fill a budget of 128 KiB: another body is answered
    503 with Retry-After, at once; the DSO's update sent meanwhile is retried by its outbox
    and answered once the slow bodies have timed out."""
    h = await start(network, max_body_bytes=64 * 1024, body_bytes_in_flight=128 * 1024)
    slow = [await asyncio.open_connection("127.0.0.1", h.port) for _ in range(2)]
    try:
        for _, writer in slow:
            writer.write(head(h, length=64 * 1024) + b"<")
        await asyncio.sleep(0.2)
        body = h.seal(h.update())
        response = await h.raw(head(h, length=len(body)), [body])
        assert response.status == 503, response.head
        assert b"\r\nretry-after: 1\r\n" in response.head.lower()
        assert response.seconds < 0.5, "a body over the budget waited for room"

        started = time.monotonic()
        answer = await h.dso.request(h.update(), to=CRO, timeout=READ_TIMEOUT_S + 10)
        assert answer.result is Result.ACCEPTED
        assert time.monotonic() - started >= READ_TIMEOUT_S - 0.5, "it did not wait for room"
        statuses = [a.http_status for a in await h.dso.store.attempts(answer.reference_message_id)]
        assert statuses[0] == 503 and statuses[-1] == 200, statuses
    finally:
        for _, writer in slow:
            writer.close()
    await h.assert_still_serving(handled_before=1)
