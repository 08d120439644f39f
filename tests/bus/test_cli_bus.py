"""`uftp-adapter bus send` and `bus tail` against the real broker, beside participants run
from their config files as `serve` runs them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapter.bus.rabbitmq import Topology
from adapter.cli import main
from adapter.config import load_config
from adapter.run import ensure_key, participant_for
from tests.bus.conftest import AMQP_URL
from tests.conftest import eventually
from tests.test_run import copy_samples


def with_bus(path: Path, topology: Topology) -> None:
    path.write_text(
        path.read_text()
        + f"""
[bus]
url = "{AMQP_URL}"
exchange = "{topology.events_exchange}"
commands_exchange = "{topology.commands_exchange}"
commands_queue = "{topology.commands_queue}"
dead_letter_exchange = "{topology.dead_letter_exchange}"
dead_letter_queue = "{topology.dead_letter_queue}"
"""
    )


async def test_bus_send_makes_a_message_and_bus_tail_shows_its_events(
    tmp_path: Path, amqp: Any, topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_samples(tmp_path)
    for name in ("cro.toml", "dso.toml"):
        ensure_key(config / name)
    with_bus(config / "dso.toml", topology)
    dso = participant_for(load_config(config / "dso.toml"))
    cro = participant_for(load_config(config / "cro.toml"))
    await cro.start()
    await dso.start()
    try:
        await eventually(lambda: dso.bus is not None and dso.bus.health().consuming)
        tail = asyncio.ensure_future(
            asyncio.to_thread(
                main, ["bus", "tail", "--config", str(config / "dso.toml"), "--count", "2"]
            )
        )
        await asyncio.sleep(1.5)  # the tail's queue is bound
        message = tmp_path / "test.xml"
        message.write_bytes(b"<TestMessage/>")
        command_id = str(uuid.uuid4())
        status = await asyncio.to_thread(
            main,
            [
                "bus",
                "send",
                "--config",
                str(config / "dso.toml"),
                "--to",
                cro.domain,
                "--role",
                "CRO",
                "--id",
                command_id,
                str(message),
            ],
        )
        assert status == 0
        assert await asyncio.wait_for(tail, 20) == 0
    finally:
        await dso.stop()
        await cro.stop()
    out = capsys.readouterr().out
    assert command_id in out.splitlines()[0]  # `send` prints the command id
    routes = [line.split()[0] for line in out.splitlines()[1:]]
    assert sorted(routes) == ["in.TestMessageResponse", "outcome.delivered"]
    assert all(f"commandid={command_id}" in line for line in out.splitlines()[1:])


def test_bus_commands_need_a_bus_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = copy_samples(tmp_path)
    for name in ("cro.toml", "dso.toml"):
        ensure_key(config / name)
    assert main(["bus", "tail", "--config", str(config / "dso.toml")]) == 2
    assert "no [bus] table" in capsys.readouterr().err
