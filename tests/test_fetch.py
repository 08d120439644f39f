"""Bounded fetches from servers not ours (token URL, JWKS, address book), and one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapter.fetch import FetchFailed, SingleFlight, fetch


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def body(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["n"]))

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound("/body?n=1")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response()

    app = web.Application()
    app.router.add_get("/body", body)
    app.router.add_get("/elsewhere", elsewhere)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_body_up_to_the_cap_is_read_and_one_byte_more_is_refused(server: str) -> None:
    fetched = await fetch("GET", f"{server}/body?n=100", max_bytes=100, timeout_seconds=5)
    assert (fetched.status, len(fetched.body)) == (200, 100)
    with pytest.raises(FetchFailed, match="over 100 bytes"):
        await fetch("GET", f"{server}/body?n=101", max_bytes=100, timeout_seconds=5)


async def test_a_redirect_is_not_followed(server: str) -> None:
    fetched = await fetch("GET", f"{server}/elsewhere", max_bytes=100, timeout_seconds=5)
    assert fetched.status == 302


async def test_a_slow_or_absent_server_is_a_fetch_failure(server: str) -> None:
    with pytest.raises(FetchFailed, match="timed out"):
        await fetch("GET", f"{server}/slow", max_bytes=100, timeout_seconds=0.2)
    with pytest.raises(FetchFailed, match="unreachable") as caught:
        await fetch("GET", "http://127.0.0.1:9/", max_bytes=100, timeout_seconds=5)
    assert not caught.value.certificate


async def test_concurrent_callers_share_one_run_and_a_failure_reaches_each() -> None:
    flight: SingleFlight[int] = SingleFlight()
    runs = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        if runs > 1:
            raise RuntimeError("second run")
        return 7

    waiting = [asyncio.create_task(flight.run(work)) for _ in range(5)]
    await asyncio.sleep(0)
    assert flight.running
    release.set()
    assert await asyncio.gather(*waiting) == [7] * 5
    assert runs == 1 and not flight.running
    with pytest.raises(RuntimeError, match="second run"):
        await flight.run(work)  # a new run once the last has ended


async def test_a_cancelled_caller_leaves_the_run_to_the_others() -> None:
    flight: SingleFlight[str] = SingleFlight()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    first = asyncio.create_task(flight.run(work))
    second = asyncio.create_task(flight.run(work))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "done"
    assert first.cancelled()
