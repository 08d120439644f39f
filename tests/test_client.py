"""What a delivery attempt keeps of a peer's answer: its status, and its first line escaped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapter.client import Client
from adapter.uftp.retry import Outcome


@pytest.fixture
async def peer() -> AsyncIterator[str]:
    async def refuse(request: web.Request) -> web.Response:
        # A peer's words, with a terminal escape and a bidi override in them.
        return web.Response(status=400, text="bad \x1b[2J\u202eenvelope\nsecond line\n")

    app = web.Application()
    app.router.add_post("/m", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/m"
    await runner.cleanup()


async def test_a_peers_reason_is_kept_as_its_first_line_escaped(peer: str) -> None:
    client = Client()
    await client.start()
    try:
        result = await client.post(peer, b"envelope")
    finally:
        await client.close()
    assert (result.outcome, result.status) == (Outcome.PERMANENT, 400)
    assert result.detail == "bad \\x1b[2J\\u202eenvelope"
