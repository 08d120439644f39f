"""Binding for ``serve --workers``: one port, several SO_REUSEPORT sockets, and nobody else.

(Binding a single participant is tested with its start, in tests/resilience/test_startup.py.)
"""

from __future__ import annotations

import socket

import pytest

from adapter import listen
from adapter.listen import CannotListen, bind, bind_workers

pytestmark = pytest.mark.skipif(not listen.workers_supported(), reason="Linux only")


def close(guard: socket.socket | None, groups: list[list[socket.socket]]) -> None:
    for sock in (s for group in groups for s in group):
        sock.close()
    if guard is not None:
        guard.close()


def test_each_worker_gets_listening_sockets_on_one_port() -> None:
    guard, groups = bind_workers("127.0.0.1", 0, 3)
    try:
        assert guard is None  # a fresh port has nobody to keep out
        assert len(groups) == 3
        ports = {sock.getsockname()[1] for group in groups for sock in group}
        assert len(ports) == 1
        for group in groups:
            [sock] = group
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        port = ports.pop()
        # Connections are taken by the group's sockets, whichever the kernel picks.
        clients = [socket.create_connection(("127.0.0.1", port), 2) for _ in range(12)]
        accepted = 0
        for group in groups:
            group[0].setblocking(True)
            group[0].settimeout(0.2)
            while True:
                try:
                    conn, _ = group[0].accept()
                except TimeoutError:
                    break
                conn.close()
                accepted += 1
        assert accepted == 12
        for client in clients:
            client.close()
    finally:
        close(guard, groups)


def test_a_second_group_is_refused_even_while_the_first_is_being_bound() -> None:
    """Two `serve --workers` starting at once: both could pass the check that nobody listens
    before either has bound its group. The port's guard, taken first, decides."""
    port = bind("127.0.0.1", 0)
    number = port[0].getsockname()[1]
    port[0].close()
    starting = listen._take_guard(number, "that port")  # the other parent, about to bind
    try:
        with pytest.raises(CannotListen) as refused:
            bind_workers("127.0.0.1", number, 2)
        assert refused.value.strerror == (
            f"port {number} on 127.0.0.1 is in use (by another `serve --workers`)"
        )
    finally:
        starting.close()
    guard, groups = bind_workers("127.0.0.1", number, 2)  # its guard gone: free
    close(guard, groups)


def test_workers_and_a_plain_serve_keep_each_other_out() -> None:
    plain = bind("127.0.0.1", 0)
    number = plain[0].getsockname()[1]
    try:
        with pytest.raises(CannotListen, match="is in use"):
            bind_workers("127.0.0.1", number, 2)
    finally:
        plain[0].close()
    guard, groups = bind_workers("127.0.0.1", number, 2)
    try:
        with pytest.raises(CannotListen, match="is in use"):
            bind("127.0.0.1", number)
        guard_gone = guard
        assert guard_gone is not None
        guard_gone.close()  # (the workers hold it too, in life)
        with pytest.raises(CannotListen, match="is in use"):
            bind_workers("127.0.0.1", number, 2)  # the group itself keeps a new one out
    finally:
        close(None, groups)
