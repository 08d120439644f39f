"""An in-memory bus for unit tests: the port's contract without a broker.

It routes like a RabbitMQ topic exchange (``*`` one word, ``#`` any number), so that a
mandatory publish with no binding raises `Unroutable` as the real one does, and it can be
switched off (`available = False`) to play an outage: `publish` and `connect` then raise
`BusUnavailable`. Commands are handed in by the test with `deliver`, which returns the verdict
the bridge gave, and keeps rejected ones in `dead_letters`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapter.bus.events import CloudEvent
from adapter.bus.port import BusHealth, BusUnavailable, Command, CommandHandler, Unroutable, Verdict

__all__ = ["Binding", "MemoryBus", "topic_matches"]


def topic_matches(pattern: str, route: str) -> bool:
    """Whether `route` matches the AMQP topic `pattern` (words separated by dots)."""

    def match(pattern_words: list[str], route_words: list[str]) -> bool:
        if not pattern_words:
            return not route_words
        head, rest = pattern_words[0], pattern_words[1:]
        if head == "#":
            return any(match(rest, route_words[i:]) for i in range(len(route_words) + 1))
        if not route_words:
            return False
        return head in ("*", route_words[0]) and match(rest, route_words[1:])

    return match(pattern.split("."), route.split("."))


@dataclass
class Binding:
    """A queue bound to the events with one topic pattern."""

    pattern: str
    events: list[tuple[str, CloudEvent]] = field(default_factory=list)


class MemoryBus:
    """The `Bus` port in memory."""

    def __init__(self) -> None:
        self.available = True
        self.connected = False
        self.bindings: list[Binding] = []
        #: Every confirmed publication, in order: (route, event).
        self.published: list[tuple[str, CloudEvent]] = []
        self.dead_letters: list[Command] = []
        self._handler: CommandHandler | None = None

    def bind(self, pattern: str = "#") -> Binding:
        binding = Binding(pattern)
        self.bindings.append(binding)
        return binding

    async def connect(self) -> None:
        if not self.available:
            raise BusUnavailable("the in-memory bus is switched off")
        self.connected = True

    async def close(self) -> None:
        self.connected = False
        self._handler = None

    async def publish(self, event: CloudEvent, route: str) -> None:
        if not self.available or not self.connected:
            raise BusUnavailable("the in-memory bus is switched off")
        targets = [b for b in self.bindings if topic_matches(b.pattern, route)]
        if not targets:
            raise Unroutable(route)
        for binding in targets:
            binding.events.append((route, event))
        self.published.append((route, event))

    async def consume(self, handler: CommandHandler) -> None:
        self._handler = handler

    async def deliver(self, command: Command) -> Verdict:
        """Hand `command` to the consumer, as the broker would; the verdict it settled with."""
        if self._handler is None:
            raise RuntimeError("nobody consumes commands")
        verdict = await self._handler(command)
        if verdict is Verdict.REJECT:
            self.dead_letters.append(command)
        return verdict

    def health(self) -> BusHealth:
        return BusHealth(self.connected and self.available, self._handler is not None)
