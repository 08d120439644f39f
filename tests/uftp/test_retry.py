"""The retry decision (message-transport-mechanism.md, "Transmission"): what an answer means,
and whether a message is tried again, when, or given up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from adapter.uftp.retry import Backoff, Fate, Next, Outcome, after_attempt, classify

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
HOUR = NOW + timedelta(hours=1)
BACKOFF = Backoff(initial_seconds=1.0, max_seconds=300.0)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (400, Outcome.PERMANENT),
        (401, Outcome.PERMANENT),
        (403, Outcome.PERMANENT),
        (413, Outcome.PERMANENT),
        (404, Outcome.TEMPORARY),  # a front end whose back end restarts
        (408, Outcome.TEMPORARY),
        (419, Outcome.TEMPORARY),  # the receiver could not look our key up now
        (429, Outcome.TEMPORARY),
        (500, Outcome.TEMPORARY),
        (503, Outcome.TEMPORARY),
        (302, Outcome.TEMPORARY),  # a redirect not followed: not an answer yet
    ],
)
def test_each_status_means_what_the_spec_says(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def decide(outcome: Outcome, attempt: int = 1, *, now: datetime = NOW, seed: int = 0) -> Next:
    return after_attempt(
        outcome,
        attempt=attempt,
        deadline=HOUR,
        now=now,
        backoff=BACKOFF,
        rng=random.Random(seed),
    )


def test_delivered_and_refused_are_final() -> None:
    assert decide(Outcome.DELIVERED) == Next(Fate.DELIVERED)
    assert decide(Outcome.PERMANENT) == Next(Fate.FAILED)


def test_a_temporary_failure_is_tried_again_after_a_growing_delay() -> None:
    delays = []
    for attempt in range(1, 12):
        decision = decide(Outcome.TEMPORARY, attempt)
        assert decision.fate is Fate.RETRY and decision.at is not None
        delays.append((decision.at - NOW).total_seconds())
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delays[-1] <= ceiling  # equal jitter: half fixed, half random
    assert delays[-1] > 100 * delays[0]  # exponential, up to the cap
    assert max(delays) <= 300.0


def test_the_jitter_spreads_senders_apart() -> None:
    ats = {decide(Outcome.TEMPORARY, 6, seed=seed).at for seed in range(20)}
    assert len(ats) == 20


def test_a_retry_that_would_fall_after_the_deadline_expires_now() -> None:
    late = HOUR - timedelta(seconds=10)
    assert decide(Outcome.TEMPORARY, 1, now=late).fate is Fate.RETRY  # within 1 s
    assert decide(Outcome.TEMPORARY, 10, now=late) == Next(Fate.EXPIRED)  # 256-512 s: too late


def test_the_backoff_is_capped_by_its_maximum() -> None:
    rng = random.Random(1)
    backoff = Backoff(0.1, 1.6)
    assert 0.2 <= backoff.delay(3, rng) <= 0.4  # the third: ceiling 0.4
    assert all(0.8 <= backoff.delay(attempt, rng) <= 1.6 for attempt in range(5, 40))
