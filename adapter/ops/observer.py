"""What the participant reports about its work, for whoever measures it (`metrics.Metrics`).

The endpoint, the outbox and the participant call an `Observer` at the few points where
something countable happens; by default a `NullObserver`, which does nothing, so that a
participant without metrics pays a method call and no more. Kept free of prometheus-client,
which is an optional dependency.

Label values are bounded by design: a peer is named only when it is a configured one (a
sender's domain is the sender's to choose before it is verified, and a label per value would
let anyone grow our memory), message types are the schema's, outcomes and statuses ours.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["UNKNOWN_PEER", "NullObserver", "Observer"]

#: The peer label of a request whose sender is not one of our configured peers.
UNKNOWN_PEER = "unknown"


class Observer(Protocol):
    def http_response(self, status: int) -> None:
        """The endpoint answered a POST of a message with `status`."""

    def refused(self, reason: str, peer: str) -> None:
        """A POST was refused before its message was stored (`reason`: the error's type)."""

    def received(self, message_type: str, peer: str, outcome: str) -> None:
        """A verified message was stored: `outcome` is new, already-submitted,
        duplicate-identifier, or rejected (the protocol checks will reject it)."""

    def attempted(
        self, message_type: str, peer: str, outcome: str, status: int | None, seconds: float
    ) -> None:
        """One delivery attempt (one POST) ended after `seconds`."""

    def sent(self, message_type: str, peer: str, outcome: str) -> None:
        """A message's delivery ended for good: delivered, failed or expired."""

    def handled(self, message_type: str, outcome: str, seconds: float) -> None:
        """A received message's handling ended: ok, or fault (ours: tried again), or error."""

    def committed(self, seconds: float) -> None:
        """The store committed one transaction (called from any thread)."""


class NullObserver:
    """Measures nothing."""

    def http_response(self, status: int) -> None:
        pass

    def refused(self, reason: str, peer: str) -> None:
        pass

    def received(self, message_type: str, peer: str, outcome: str) -> None:
        pass

    def attempted(
        self, message_type: str, peer: str, outcome: str, status: int | None, seconds: float
    ) -> None:
        pass

    def sent(self, message_type: str, peer: str, outcome: str) -> None:
        pass

    def handled(self, message_type: str, outcome: str, seconds: float) -> None:
        pass

    def committed(self, seconds: float) -> None:
        pass


NULL_OBSERVER = NullObserver()
