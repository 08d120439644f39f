"""The in-memory bus keeps the port's contract: topic routing, Unroutable, outages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapter.bus.events import XML_CONTENT_TYPE, CloudEvent
from adapter.bus.memory import MemoryBus, topic_matches
from adapter.bus.port import BusUnavailable, Command, Unroutable, Verdict

EVENT = CloudEvent("e", "urn:uftp:CRO:cro.test", "uftp.X", datetime.now(UTC), XML_CONTENT_TYPE, b"")


@pytest.mark.parametrize(
    ("pattern", "route", "matches"),
    [
        ("#", "in.X", True),
        ("in.*", "in.X", True),
        ("in.*", "in.X.y", False),
        ("in.#", "in", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.zz", False),
        ("outcome.failed", "outcome.delivered", False),
    ],
)
def test_topic_matching_is_amqp_s(pattern: str, route: str, matches: bool) -> None:
    assert topic_matches(pattern, route) is matches


async def test_a_publish_without_a_binding_is_unroutable_and_an_outage_unavailable() -> None:
    bus = MemoryBus()
    await bus.connect()
    with pytest.raises(Unroutable):
        await bus.publish(EVENT, "in.X")
    queue = bus.bind("in.*")
    await bus.publish(EVENT, "in.X")
    assert queue.events == [("in.X", EVENT)]
    bus.available = False
    with pytest.raises(BusUnavailable):
        await bus.publish(EVENT, "in.X")
    assert not bus.health().connected


async def test_rejected_commands_are_dead_lettered() -> None:
    bus = MemoryBus()

    async def handler(command: Command) -> Verdict:
        return Verdict.REJECT if command.id == "bad" else Verdict.ACK

    await bus.consume(handler)
    assert await bus.deliver(Command({"id": "good"}, b"")) is Verdict.ACK
    assert await bus.deliver(Command({}, b"", message_id="bad")) is Verdict.REJECT
    assert [c.id for c in bus.dead_letters] == ["bad"]
