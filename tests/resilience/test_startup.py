"""Starting on a port that is taken: a second instance on the same store, say. It must fail
before it sends or handles anything, close what it opened, and say why in one line."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.directory import StaticDirectory
from adapter.listen import CannotListen, bind
from adapter.store.base import OutboundStatus
from adapter.testing import Network, eventually
from adapter.uftp.messages import Role
from tests.resilience.dso_driver import portfolio_update
from tests.resilience.harness import free_port
from tests.resilience.test_outages import QUICK, ScriptedPeer, peer_entry
from tests.test_run import copy_samples

DSO = "dso.outage.test"
CRO = "cro.outage.test"


@pytest.fixture
def holder() -> Iterator[socket.socket]:
    """A socket listening on a port, as another process would."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        yield listening


async def test_a_taken_port_fails_the_start_before_any_delivery(
    network: Network, holder: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    taken_port = int(holder.getsockname()[1])
    # A message left pending by a previous run, for a peer that is reachable now.
    peer_port = free_port()
    first = network.create(DSO, Role.DSO, delivery=QUICK, store_name="dso")
    await network.start(first)
    assert isinstance(first.directory, StaticDirectory)
    first.directory.add(peer_entry(f"http://127.0.0.1:{peer_port}/shapeshifter/api/v3/message"))
    sent = await first.send(portfolio_update(0, 3), to=CRO)
    await eventually(lambda: first.store.attempts(sent.message_id))
    await first.stop()
    peer = ScriptedPeer(port=peer_port)
    await peer.start()
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, c: loop_errors.append(c))
    try:
        second = network.create(DSO, Role.DSO, delivery=QUICK, store_name="dso", port=taken_port)
        assert isinstance(second.directory, StaticDirectory)
        second.directory.add(peer_entry(peer.url))

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(OSError) as failed:
                await second.start()
            await asyncio.sleep(0.3)  # a delivery started anyway would have arrived by now
            gc.collect()  # an unclosed client session says so when it is collected

        assert peer.hits == []
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
        assert loop_errors == []
        assert "Unclosed" not in caplog.text
        assert isinstance(failed.value, CannotListen)
        assert failed.value.strerror == f"port {taken_port} on 127.0.0.1 is in use"

        # It closed its store (opening it again would fail otherwise): once the port is free,
        # the same participant starts on it, and only now is the pending message delivered.
        holder.close()
        await second.start()
        assert second.port == taken_port

        async def is_delivered() -> bool:
            record = await second.store.get_outbound(sent.message_id)
            return record is not None and record.status is OutboundStatus.DELIVERED

        await eventually(is_delivered)
        assert len(peer.hits) == 1
    finally:
        await peer.stop()


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path, holder: socket.socket) -> None:
    taken_port = int(holder.getsockname()[1])
    config = copy_samples(tmp_path)
    cro = config / "cro.toml"
    text = cro.read_text()
    start = text.index('listen = "') + len('listen = "')
    end = text.index('"', start)
    cro.write_text(text[:start] + f"127.0.0.1:{taken_port}" + text[end:])
    for name in ("cro", "dso"):
        generated = subprocess.run(
            [
                sys.executable,
                "-m",
                "adapter",
                "keys",
                "generate",
                name,
                "--dir",
                str(tmp_path / "keys"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert generated.returncode == 0, generated.stderr

    served = subprocess.run(
        [sys.executable, "-W", "always", "-m", "adapter", "serve", "--config", str(cro)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert served.returncode == 2
    assert served.stderr == f"uftp-adapter: error: port {taken_port} on 127.0.0.1 is in use\n"
    assert served.stdout == ""


def test_bind_listens_on_every_address_of_a_name_on_one_port() -> None:
    sockets = bind("localhost", 0)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert sockets and len(ports) == 1
        for sock in sockets:  # listening already: a connection waits in the backlog
            host, port = sock.getsockname()[:2]
            with socket.create_connection((host, port), 2):
                pass
    finally:
        for sock in sockets:
            sock.close()


def test_bind_says_which_address_cannot_be_listened_on(holder: socket.socket) -> None:
    port = int(holder.getsockname()[1])
    with pytest.raises(CannotListen) as taken:
        bind("127.0.0.1", port)
    assert taken.value.strerror == f"port {port} on 127.0.0.1 is in use"

    with pytest.raises(CannotListen) as foreign:
        bind("192.0.2.1", 0)  # TEST-NET-1: never an address of this host
    assert foreign.value.strerror is not None
    assert foreign.value.strerror.startswith("cannot listen on port 0 on 192.0.2.1: ")
