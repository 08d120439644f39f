"""What a delivery attempt's answer means, and what happens next: the retry decision.

The spec (message-transport-mechanism.md, "Transmission"): 200 is final success; server
errors, unknown statuses, timeouts and resets are temporary; a non-ambiguous 4xx is final
failure. 404 counts as temporary, as the spec encourages (front ends answer it while a back
end restarts), and so do 408, 425, 429 and 419, which the status table calls temporary. A
sender keeps trying "for a reasonable amount of time (which is again at least one hour for
routine messages, employing exponential back off)", then returns the message to its sending
process.

Delays grow as initial * 2**attempt, capped, with "equal jitter" (half fixed, half random),
so that a peer coming back from an outage is not hit by every sender at the same instant.

Pure: the caller gives the time, the attempt number and its random generator, and does what
the decision says (`adapter.outbox` keeps the timers and the store).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "TEMPORARY_4XX",
    "Backoff",
    "Fate",
    "Next",
    "Outcome",
    "after_attempt",
    "backoff_delay",
    "classify",
]

#: The 4xx statuses a sender retries; every other 4xx fails the delivery for good.
TEMPORARY_4XX = frozenset({404, 408, 419, 425, 429})


class Outcome(StrEnum):
    """What one delivery attempt came to."""

    DELIVERED = "delivered"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


def classify(status: int) -> Outcome:
    """The outcome of an attempt the peer answered with HTTP `status`."""
    if status == 200:
        return Outcome.DELIVERED
    if 400 <= status < 500 and status not in TEMPORARY_4XX:
        return Outcome.PERMANENT
    return Outcome.TEMPORARY


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait after the `attempt`-th failed attempt (1-based)."""
    ceiling = min(maximum, initial * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The schedule of retries: the first delay's ceiling, and the cap of every later one."""

    initial_seconds: float
    max_seconds: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after the `attempt`-th failed attempt (1-based)."""
        return backoff_delay(attempt, self.initial_seconds, self.max_seconds, rng)


class Fate(StrEnum):
    """Where a message's delivery stands after an attempt."""

    DELIVERED = "delivered"
    #: Refused for good: the sending process is told.
    FAILED = "failed"
    #: The next attempt would fall after the deadline: given up, and the sender told.
    EXPIRED = "expired"
    #: Tried again at `Next.at`.
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Next:
    """The decision after an attempt."""

    fate: Fate
    #: When to try again; set for `Fate.RETRY` only.
    at: datetime | None = None


def after_attempt(
    outcome: Outcome,
    *,
    attempt: int,
    deadline: datetime,
    now: datetime,
    backoff: Backoff,
    rng: random.Random,
) -> Next:
    """What happens after the `attempt`-th attempt (1-based) came to `outcome` at `now`.

    A temporary failure is retried after the backoff delay, unless that falls after the
    message's `deadline`: then it expires now rather than once more later.
    """
    if outcome is Outcome.DELIVERED:
        return Next(Fate.DELIVERED)
    if outcome is Outcome.PERMANENT:
        return Next(Fate.FAILED)
    at = now + timedelta(seconds=backoff.delay(attempt, rng))
    if at > deadline:
        return Next(Fate.EXPIRED)
    return Next(Fate.RETRY, at)
