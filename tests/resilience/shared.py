"""Several processes of one participant on one PostgreSQL store, for the tests of them: their
configuration files, a peer that counts what it accepts, the child processes, and what the
store says. The fixtures are in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiohttp import web

from adapter.keys import PrivateKeys
from adapter.uftp import codec, envelope
from tests.postgres import PG_DSN as PG_DSN  # the tests of several processes import it here
from tests.postgres import dsn_with_schema
from tests.resilience.harness import free_port
from tests.serve import Process, serve_argv, until_serving

DSO = "dso.shared.test"
CRO = "cro.shared.test"
#: Claims lapse one second after their process died.
LEASE_SECONDS = 1.0
#: Deliveries to one peer server in flight at once, all processes together.
PER_PEER = 2


def store_url(schema: str) -> str:
    return dsn_with_schema(schema)


def write_config(
    path: Path,
    *,
    domain: str,
    role: str,
    key: Path,
    port: int,
    store: str,
    peer_domain: str,
    peer_role: str,
    peer_url: str,
    peer_pub: Path,
    extra: str = "",
) -> Path:
    path.write_text(
        f"""\
[participant]
domain = "{domain}"
role = "{role}"
signing_key = "{key}"
listen = "127.0.0.1:{port}"
store = "{store}"
versions = ["3.1.0"]

[delivery]
deadline_seconds = 300
request_timeout_seconds = 10
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.4
lease_seconds = {LEASE_SECONDS}

[limits]
deliveries_per_peer = {PER_PEER}
{extra}
[[peers]]
domain = "{peer_domain}"
role = "{peer_role}"
endpoint = "{peer_url}"
public_keys_file = "{peer_pub}"
""",
        "utf-8",
    )
    return path


def dso_config(
    tmp_path: Path, keys: Path, schema: str, name: str, peer_url: str, port: int = 0
) -> Path:
    """A DSO process's configuration: all share `schema`, each has a port of its own."""
    return write_config(
        tmp_path / f"{name}.toml",
        domain=DSO,
        role="DSO",
        key=keys / "dso.key",
        port=port or free_port(),
        store=store_url(schema),
        peer_domain=CRO,
        peer_role="CRO",
        peer_url=peer_url,
        peer_pub=keys / "cro.pub",
    )


@dataclass
class CountingPeer:
    """A CRO's endpoint that verifies the DSO's signature, counts the POSTs it accepts per
    MessageID and how many are in progress at once, and answers after `delay` seconds: 503
    while `closed`, 400 while `refusing`, 200 otherwise. It sends no responses."""

    dso_key: PrivateKeys
    delay: float = 0.05
    closed: bool = False
    #: Answer 400 (a permanent refusal) instead.
    refusing: bool = False
    port: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    posts: int = 0
    in_progress: int = 0
    most_in_progress: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/shapeshifter/api/v3/message"

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        self.in_progress += 1
        self.most_in_progress = max(self.most_in_progress, self.in_progress)
        try:
            body = await request.read()
            signed = envelope.parse_envelope(body)
            inner = envelope.open_sealed(signed.sealed, [self.dso_key.public.signing])
            message = codec.decode(inner)
            await asyncio.sleep(self.delay)
            if self.closed:
                return web.Response(status=503, text="not yet\n")
            if self.refusing:
                return web.Response(status=400, text="refused\n")
            self.accepted[message.message_id] += 1
            return web.Response(text="OK\n")
        finally:
            self.in_progress -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/shapeshifter/api/v3/message", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Processes:
    """Child processes of one test, ended whatever happens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Process] = []

    async def driver(self, name: str, config: Path, count: int) -> Process:
        argv = [sys.executable, "-m", "tests.resilience.shared_driver", "--config", str(config)]
        argv += ["--count", str(count), "--to", CRO]
        return await self._start(Process(name, argv, self.root / f"{name}.log"))

    async def serve(self, name: str, config: Path) -> Process:
        process = await self._start(Process(name, serve_argv(config), self.root / f"{name}.log"))
        await until_serving(process, 60)
        return process

    async def _start(self, process: Process) -> Process:
        await process.start()
        self.started.append(process)
        return process

    async def close(self) -> None:
        for process in self.started:
            with contextlib.suppress(Exception):
                await process.terminate(10)
            await process.ensure_dead()


async def outbound_status(schema: str) -> Counter[str]:
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f"SELECT status, count(*) AS n FROM {schema}.outbound GROUP BY 1")
    finally:
        await conn.close()
    return Counter({row["status"]: row["n"] for row in rows})


async def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = condition() if callable(condition) else condition
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


async def inbound_status(schema: str, *, unhandled_only: bool = False) -> Counter[str] | bool:
    """The CRO's inbound messages by status; with `unhandled_only`, whether none is left."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f"SELECT status, count(*) AS n FROM {schema}.inbound GROUP BY 1")
    finally:
        await conn.close()
    counts = Counter({row["status"]: row["n"] for row in rows})
    return counts["received"] == 0 if unhandled_only else counts
