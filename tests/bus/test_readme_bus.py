"""The README's bus consumer and producer ("Connecting your systems"), run as written
against the real RabbitMQ and a participant with a bus: only the exchange names are made
unique to this test."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from adapter.bus.rabbitmq import Topology
from adapter.uftp.messages import Role
from tests.bus.conftest import AMQP_URL
from tests.bus.test_bridge_events import CRO, DSO
from tests.bus.test_rabbitmq_e2e import rabbit_bridge, unique
from tests.conftest import Network, eventually
from tests.test_readme import python_examples


async def test_the_readme_consumer_sees_what_the_readme_producer_caused(
    network: Network, amqp: Any, topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, consumer, producer, *_ = python_examples()
    code = consumer.replace('EVENTS = "uftp.events"', f'EVENTS = "{topology.events_exchange}"')
    code += producer.replace(
        'COMMANDS = "uftp.commands"', f'COMMANDS = "{topology.commands_exchange}"'
    )
    assert topology.events_exchange in code and topology.commands_exchange in code
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), namespace)  # the project's own README

    dso = network.create(DSO, Role.DSO, bus=rabbit_bridge(topology, unique("dso")))
    cro = network.create(CRO, Role.CRO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: dso.bus is not None and dso.bus.health().consuming)

    queue_name = f"readme.{uuid.uuid4().hex[:8]}"
    seen: set[str] = set()
    consuming = asyncio.ensure_future(namespace["consume"](AMQP_URL, queue_name, seen))
    printed: list[str] = []
    try:
        await asyncio.sleep(0.5)
        await namespace["send_command"](AMQP_URL, CRO, "readme-1", b"<TestMessage/>")

        def both_seen() -> bool:
            printed.extend(capsys.readouterr().out.splitlines())
            return {line.split()[0] for line in printed} >= {
                "outcome.delivered",
                "in.TestMessageResponse",
            }

        await eventually(both_seen, timeout=15)
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        channel = await amqp.channel()
        await channel.queue_delete(queue_name)
    assert all(line.endswith("readme-1") for line in printed), printed
    assert len(seen) == len(printed)
