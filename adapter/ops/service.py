"""A participant run as a service: the participant and the periodic work around it.

`serve` runs one of these; tests drive it the same way, with the participant at hand.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from adapter.config import Config
from adapter.ops.housekeeping import Housekeeping
from adapter.participant import Participant

__all__ = ["Service"]


class Service:
    def __init__(self, config: Config) -> None:
        from adapter.run import participant_for

        self.config = config
        self.participant: Participant = participant_for(config)
        self.housekeeping = Housekeeping(self.participant)

    async def start(self) -> None:
        """Start the participant (store, port, deliveries), then the periodic work."""
        await self.participant.start()
        self.housekeeping.start()

    async def stop(self) -> None:
        """The periodic work first, then the participant (see `Participant.stop`)."""
        await self.housekeeping.stop()
        await self.participant.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
