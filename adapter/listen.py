"""Binding the endpoint's listening sockets, before the participant does anything else.

A participant that cannot listen must fail before it has sent or handled anything: otherwise a
second instance started by mistake on the same store (its port taken by the first) resends the
pending messages and recovers unfinished ones before it notices. Binding is therefore its own
step, done by hand rather than by aiohttp's TCPSite (which binds and serves in one call): the
sockets are bound and listening, so a peer's connection waits in the backlog, while the
participant reads its store; they are served once it is ready.
"""

from __future__ import annotations

import errno
import os
import socket

from .uftp.errors import AdapterError

__all__ = ["CannotListen", "bind"]

#: Connections the kernel queues for each socket until they are accepted (asyncio's default).
BACKLOG = 100


class CannotListen(AdapterError, OSError):
    """The address cannot be listened on; `strerror` says so in words an operator can act on
    (the command line prints it as it is)."""


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of `host` (one for an IP address), as asyncio's
    `create_server` would bind them; non-blocking, ready for `aiohttp.web.SockSite`.

    Port 0 picks a free port, the same for every address. Raises `CannotListen`.
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
                # its previous run linger in TIME_WAIT. (Not SO_REUSEPORT: a second instance
                # must not share the port.)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
