"""`uftp-adapter bus send` and `bus tail` against each real broker, RabbitMQ and NATS
JetStream, beside participants run from their config files as `serve` runs them."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapter.bus.operator import nats_filter
from adapter.cli import main
from adapter.config import load_config
from adapter.run import ensure_key, participant_for
from tests.bus.brokers import BrokerSide
from tests.conftest import eventually
from tests.test_run import copy_samples


def with_bus(path: Path, table: dict[str, Any]) -> None:
    lines = [f"{key} = {json.dumps(value)}" for key, value in table.items()]  # TOML's too
    path.write_text(path.read_text() + "\n[bus]\n" + "\n".join(lines) + "\n")


async def test_bus_send_makes_a_message_and_bus_tail_shows_its_events(
    tmp_path: Path, bus_broker: BrokerSide, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_samples(tmp_path)
    for name in ("cro.toml", "dso.toml"):
        ensure_key(config / name)
    with_bus(config / "dso.toml", bus_broker.bus_table())
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


@pytest.mark.parametrize("command", ["tail", "send"])
def test_a_broker_out_of_reach_is_one_line_and_status_2(
    tmp_path: Path, bus_broker: BrokerSide, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scheme = "nats://" if bus_broker.kind == "nats" else "amqp://guest:guest@"
    config = copy_samples(tmp_path)
    for name in ("cro.toml", "dso.toml"):
        ensure_key(config / name)
    with_bus(config / "dso.toml", {**bus_broker.bus_table(), "url": f"{scheme}127.0.0.1:{port}/"})
    message = tmp_path / "test.xml"
    message.write_bytes(b"<TestMessage/>")
    args = {"tail": ["--count", "1"], "send": ["--to", "cro.example.com", str(message)]}
    assert main(["bus", command, "--config", str(config / "dso.toml"), *args[command]]) == 2
    err = capsys.readouterr().err
    assert "error: cannot connect to" in err and "Traceback" not in err, err
    assert "guest:guest" not in err


@pytest.mark.parametrize("bus_broker", ["nats"], indirect=True)
async def test_bus_tail_on_nats_names_a_missing_stream_and_a_pattern_it_cannot_say(
    tmp_path: Path, bus_broker: BrokerSide, capsys: pytest.CaptureFixture[str]
) -> None:
    config = copy_samples(tmp_path)
    for name in ("cro.toml", "dso.toml"):
        ensure_key(config / name)
    with_bus(config / "dso.toml", {**bus_broker.bus_table(), "stream": "NO_SUCH_STREAM"})
    tail = ["bus", "tail", "--config", str(config / "dso.toml"), "--count", "1"]
    assert await asyncio.to_thread(main, tail) == 2
    assert "NATS has no stream NO_SUCH_STREAM" in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*tail, "--routing-key", "in.#.x"]) == 2
    assert "'#' only at the end" in capsys.readouterr().err


def test_routing_key_patterns_become_subject_filters() -> None:
    assert nats_filter("uftp.events", "#") == "uftp.events.>"
    assert nats_filter("uftp.events", "in.*") == "uftp.events.in.*"
    assert nats_filter("e", "outcome.delivered") == "e.outcome.delivered"
    for bad in ("in.#.x", "in..x", "in.x*", "in.>", ""):
        with pytest.raises(ValueError):
            nats_filter("uftp.events", bad)
