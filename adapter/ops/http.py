"""The operator's HTTP listener: `/metrics`, `/health` and `/ready`, on the address of
[metrics] listen, apart from the peers' port.

It starts before the participant and stops after it, so that a probe can tell "starting" and
"stopping" from "down": `/health` is 200 whenever the process answers (alive), `/ready` 200
only while the participant takes messages (store open, port bound, serving) and 503 before
and while it stops. Only GET; nothing here reads a request body.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from adapter import listen
from adapter.ops.metrics import CONTENT_TYPE_LATEST, Metrics
from adapter.settings import ListenAddress

__all__ = ["OpsServer"]


class OpsServer:
    def __init__(self, address: ListenAddress, metrics: Metrics, ready: Callable[[], bool]) -> None:
        self._address = address
        self._metrics = metrics
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self.port = address.port

    def url(self, path: str = "/metrics") -> str:
        host = f"[{self._address.host}]" if ":" in self._address.host else self._address.host
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        """Bind (`listen.CannotListen` when the address is taken) and serve."""
        sockets = listen.bind(self._address.host, self._address.port)
        self.port = sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/health", self._handle_health)
        app.router.add_get("/ready", self._handle_ready)
        self._runner = web.AppRunner(app, access_log=None)
        try:
            await self._runner.setup()
            for sock in sockets:
                site = web.SockSite(self._runner, sock)
                await site.start()
        except BaseException:
            for sock in sockets:
                sock.close()
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        self._metrics.set_ready(self._ready())
        return web.Response(
            body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _handle_ready(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")
