"""Binding the endpoint's listening sockets, before the participant does anything else.

A participant that cannot listen must fail before it has sent or handled anything: otherwise a
second instance started by mistake on the same store (its port taken by the first) resends the
pending messages and recovers unfinished ones before it notices. Binding is therefore its own
step, done by hand rather than by aiohttp's TCPSite (which binds and serves in one call): the
sockets are bound and listening, so a peer's connection waits in the backlog, while the
participant reads its store; they are served once it is ready.

``serve --workers N`` runs N processes on one port (`bind_workers`): each worker accepts on a
socket of its own, all bound with SO_REUSEPORT, and the kernel spreads new connections over
them by a hash of the peer's address. That option is exactly what lets any other process of
the same user join the port, so the parent that binds them first takes the port's *guard*:
an abstract Unix socket named after the port, which the kernel lets one process bind at a
time and frees when the last process holding it closes it (the workers inherit it, so a
parent killed while its workers serve does not free it). A second ``serve --workers`` on
the port, of the same configuration or any other, fails on the guard; a plain ``serve``
fails to bind beside a group of SO_REUSEPORT sockets (a socket without the option cannot
join one), and a group cannot form beside it, which a plain bind checks before the group
is bound. Abstract sockets and SO_REUSEPORT's spreading are Linux's.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from .uftp.errors import AdapterError

__all__ = ["CannotListen", "bind", "bind_workers", "workers_supported"]

#: Connections the kernel queues for each socket until they are accepted (asyncio's default).
BACKLOG = 100


class CannotListen(AdapterError, OSError):
    """The address cannot be listened on; `strerror` says so in words an operator can act on
    (the command line prints it as it is)."""


def workers_supported() -> bool:
    """Whether `bind_workers` can work here: Linux (see the module docstring)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def bind_workers(
    host: str, port: int, workers: int
) -> tuple[socket.socket | None, list[list[socket.socket]]]:
    """The port's guard (None for port 0: a fresh port has no other claimant) and `workers`
    groups of listening sockets on every address of `host`, all on one port, with
    SO_REUSEPORT; one group per worker. Raises `CannotListen` when another process listens
    on the port (another ``serve``, with workers or without)."""
    where = f"port {port} on {host}"
    guard = _take_guard(port, where) if port else None
    groups: list[list[socket.socket]] = []
    try:
        if port:
            for sock in bind(host, port):  # without SO_REUSEPORT: any listener refuses it
                sock.close()
        groups.append(bind(host, port, reuse_port=True))
        port = groups[0][0].getsockname()[1]
        groups.extend(bind(host, port, reuse_port=True) for _ in range(workers - 1))
    except BaseException:
        for sock in (s for group in groups for s in group):
            sock.close()
        if guard is not None:
            guard.close()
        raise
    return guard, groups


def _take_guard(port: int, where: str) -> socket.socket:
    guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        guard.bind(f"\0uftp-adapter/tcp/{port}")
    except OSError as exc:
        guard.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                exc.errno, f"{where} is in use (by another `serve --workers`)"
            ) from None
        raise CannotListen(exc.errno, f"cannot guard {where}: {exc.strerror}") from None
    return guard


def bind(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets on every address of `host` (one for an IP address), as asyncio's
    `create_server` would bind them; non-blocking, ready for `aiohttp.web.SockSite`.

    Port 0 picks a free port, the same for every address. `reuse_port` sets SO_REUSEPORT,
    for `bind_workers` only. Raises `CannotListen`.
    """
    where = f"port {port} on {host}"
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        problem = f"cannot listen on {host}: {exc.strerror}"
        raise CannotListen(errno.EADDRNOTAVAIL, problem) from None
    sockets: list[socket.socket] = []
    unavailable: OSError | None = None
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:  # an address family this host does not have (no IPv6)
                unavailable = exc
                continue
            sockets.append(sock)
            if os.name == "posix":
                # As asyncio does: a restarted participant can bind while the connections of
                # its previous run linger in TIME_WAIT. (Not SO_REUSEPORT but for workers,
                # behind the port's guard: a second instance must not share the port.)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                # As asyncio does: one of the name's addresses is not on this host (::1 of
                # "localhost" without IPv6); listen on the others.
                unavailable = exc
                sockets.pop().close()
                continue
            sock.listen(BACKLOG)
            sock.setblocking(False)
        if not sockets:
            raise unavailable or OSError(errno.EADDRNOTAVAIL, "no address to listen on")
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(exc.errno, f"{where} is in use") from None
        raise CannotListen(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
    return sockets
