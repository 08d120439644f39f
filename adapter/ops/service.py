"""A participant run as a service: the participant, the operator's HTTP listener (metrics,
health, readiness), the admin socket the command line uses (`adapter.ops.admin`) and the
periodic work around it.

`serve` runs one of these; tests drive it the same way, with the participant at hand.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import TYPE_CHECKING, Self

from adapter.config import Config, ConfigError
from adapter.ops.housekeeping import Housekeeping
from adapter.participant import Participant
from adapter.store.sqlite import SqliteStore
from adapter.wiring import participant_for

if TYPE_CHECKING:
    from adapter.ops.admin import AdminServer
    from adapter.ops.http import OpsServer
    from adapter.ops.metrics import Metrics

__all__ = ["Service"]


class Service:
    def __init__(self, config: Config, *, admin: bool = True) -> None:
        """`admin`: serve the admin socket of [admin] (one process of `serve --workers`
        does)."""
        self.config = config
        self.participant: Participant = participant_for(config)
        self.admin_server: AdminServer | None = None
        # Only where the kernel names a connection's user (SO_PEERCRED, Linux): elsewhere the
        # command line runs standalone, as it would without a serve.
        if admin and config.admin.socket is not None and hasattr(socket, "SO_PEERCRED"):
            from adapter.ops.admin import AdminServer

            self.admin_server = AdminServer(config, self.participant, config.admin.socket)
        #: True from the end of `start` to the beginning of `stop`: what `/ready` says.
        self.ready = False
        self.metrics: Metrics | None = None
        self.ops_server: OpsServer | None = None
        if config.metrics.listen is not None:
            try:
                from adapter.ops.http import OpsServer
                from adapter.ops.metrics import Metrics
            except ImportError as exc:
                raise ConfigError(str(config.path), "metrics.listen", str(exc)) from None
            settings = config.participant
            self.metrics = Metrics(role=settings.role.value, domain=settings.domain)
            self.participant.observer = self.metrics
            if isinstance(self.participant.store, SqliteStore):
                self.participant.store.on_commit = self.metrics.committed
            self.ops_server = OpsServer(config.metrics.listen, self.metrics, lambda: self.ready)
        self.housekeeping = Housekeeping(self.participant, self.metrics, config.retention)

    async def start(self, *, sockets: list[socket.socket] | None = None) -> None:
        """The operator's listener first (so that a probe hears "not ready" while the rest
        starts), then the participant (store, port, deliveries), then the admin socket (once
        the store and port are this process's: a second serve is refused by those first, by
        name), then the periodic work. Raises `listen.CannotListen` for either address, or
        `admin.AdminSocketError`, having started nothing."""
        if self.ops_server is not None:
            await self.ops_server.start()
        try:
            await self.participant.start(sockets=sockets)
            try:
                if self.admin_server is not None:
                    await self.admin_server.start()
            except BaseException:
                await self.participant.stop()
                raise
        except BaseException:
            if self.ops_server is not None:
                await self.ops_server.stop()
            raise
        self.housekeeping.start()
        self.ready = True

    async def stop(self) -> None:
        """Not ready first; the admin socket (a command waiting on it is told, its message
        stays queued), the periodic work, the participant (see `Participant.stop`), and the
        operator's listener last."""
        self.ready = False
        if self.admin_server is not None:
            await self.admin_server.stop()
        await self.housekeeping.stop()
        await self.participant.stop()
        if self.ops_server is not None:
            await self.ops_server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
