"""The event loop a participant runs on: asyncio's own, or uvloop when asked for."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.event_loop import UnknownEventLoop, loop_factory, run
from adapter.testing import Network
from adapter.uftp.messages import Result, Role, TestMessage, TestMessageResponse

uvloop = pytest.importorskip("uvloop", reason="the uvloop extra is not installed")


async def _round_trip(folder: Path) -> tuple[type, Result]:
    """A DSO's TestMessage answered by a CRO, both on SQLite stores, on this loop."""
    network = Network(folder)
    try:
        cro = network.create("cro.example.com", Role.CRO)
        dso = network.create("dso.example-grid.nl", Role.DSO)
        await network.start(cro, dso)
        network.introduce(cro, dso)
        response = await dso.request(TestMessage(), to="cro.example.com", timeout=10)
        assert isinstance(response, TestMessageResponse)
        stored = await dso.store.get_inbound("cro.example.com", response.message_id)
        assert stored is not None  # the response was stored (committed) before it was used
        return type(asyncio.get_running_loop()), response.result
    finally:
        await network.close()


def test_a_round_trip_runs_on_uvloop(tmp_path: Path) -> None:
    loop_type, result = run(_round_trip(tmp_path), "uvloop")
    assert loop_type is uvloop.Loop
    assert result is Result.ACCEPTED


def test_asyncio_is_the_default(tmp_path: Path) -> None:
    loop_type, result = run(_round_trip(tmp_path))
    assert not issubclass(loop_type, uvloop.Loop)
    assert result is Result.ACCEPTED


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(UnknownEventLoop, match="unknown event loop 'tokio'"):
        loop_factory("tokio")


def test_serve_refuses_uvloop_when_it_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if the extra were not installed
    config = Path(__file__).resolve().parents[1] / "config" / "cro.toml"
    status = main(["serve", "--config", str(config), "--event-loop", "uvloop"])
    assert status == 2
    assert "pip install 'uftp-adapter[uvloop]'" in capsys.readouterr().err
