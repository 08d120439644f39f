"""Large portfolio updates: the column-wise connection reader and concurrent validation.

Above `CONCURRENT_VALIDATION_BYTES`, and only when the caller lends the help (`codec.Bulk`;
the endpoint's is `adapter.bulk.LARGE_MESSAGES`), the schema is checked on another thread
while the model is read, with the garbage collector paused; these tests hold that path to the
same results as the plain one, and the plain one to taking no thread and leaving the
collector alone.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest

from adapter.bulk import LARGE_MESSAGES
from adapter.uftp import codec
from adapter.uftp.errors import InvalidXml
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
)
from tests.uftp.samples import make_dso_portfolio_update

START = date(2025, 1, 1)


def portfolio(points: int, connections: int, *, end_every: int = 0) -> DSOPortfolioUpdate:
    """`points` congestion points of `connections` each; every `end_every`-th connection
    (0: none) has an EndPeriod, which its congestion point then needs too."""
    cps = []
    for i in range(points):
        rows = tuple(
            DSOPortfolioUpdateConnection(
                f"ean.8716859{i:05d}{j:06d}",
                START,
                date(2025, 6, 30) if end_every and j % end_every == 0 else None,
            )
            for j in range(connections)
        )
        cps.append(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=f"ea1.2025-01.nl.example:cp-{i}",
                start_period=START,
                end_period=date(2025, 12, 31) if end_every else None,
                mutex_offers_supported=bool(i % 2),
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.AGR if i % 3 else None,
                connections=rows,
            )
        )
    return dataclasses.replace(make_dso_portfolio_update(), congestion_points=tuple(cps))


@pytest.fixture(scope="module")
def large() -> DSOPortfolioUpdate:
    return portfolio(20, 1000)


def test_large_update_takes_the_concurrent_path_and_round_trips(large: DSOPortfolioUpdate) -> None:
    data = codec.encode(large)
    assert len(data) > codec.CONCURRENT_VALIDATION_BYTES
    assert codec.decode(data, bulk=LARGE_MESSAGES) == large
    assert codec.decode(data) == large


def test_attribute_order_chosen_by_the_sender_is_read_right(large: DSOPortfolioUpdate) -> None:
    data = codec.encode(large)
    # Another implementation may write StartPeriod before EntityAddress, on some rows only.
    swapped = re.sub(
        rb'<Connection EntityAddress="([^"]*)" StartPeriod="([^"]*)"/>',
        rb'<Connection StartPeriod="\2" EntityAddress="\1"/>',
        data,
        count=5000,
    )
    assert swapped != data
    assert codec.decode(swapped, bulk=LARGE_MESSAGES) == large


def test_small_update_with_swapped_attributes() -> None:
    message = portfolio(2, 3)
    data = codec.encode(message).replace(
        b'<Connection EntityAddress="ean.871685900001000001" StartPeriod="2025-01-01"/>',
        b'<Connection StartPeriod="2025-01-01" EntityAddress="ean.871685900001000001"/>',
    )
    assert b'StartPeriod="2025-01-01" EntityAddress' in data
    assert codec.decode(data) == message


@pytest.mark.parametrize("end_every", [1, 7])
def test_connections_with_end_periods(end_every: int) -> None:
    message = portfolio(20, 1000, end_every=end_every)
    data = codec.encode(message)
    assert len(data) > codec.CONCURRENT_VALIDATION_BYTES
    assert codec.decode(data, bulk=LARGE_MESSAGES) == message


def test_invalid_row_deep_in_a_large_update_is_refused_by_the_schema(
    large: DSOPortfolioUpdate,
) -> None:
    data = codec.encode(large)
    broken = data.replace(b'EntityAddress="ean.871685900015000500"', b'EntityAddress="ean.12"')
    assert broken != data
    with pytest.raises(InvalidXml, match="schema"):
        codec.decode(broken, bulk=LARGE_MESSAGES)


def test_invalid_date_deep_in_a_large_update_names_the_schema_problem(
    large: DSOPortfolioUpdate,
) -> None:
    data = codec.encode(large)
    broken = data.replace(b'StartPeriod="2025-01-01"/>', b'StartPeriod="2025-13-01"/>', 1)
    with pytest.raises(InvalidXml, match="schema"):
        codec.decode(broken, bulk=LARGE_MESSAGES)


# -- threads and the collector are the caller's to lend ----------------------------------------


@contextmanager
def threads_started() -> Iterator[list[str]]:
    """The names of the threads the `threading` module starts meanwhile (every thread a pool
    or `threading.Thread` starts runs the trace function first)."""
    started: list[str] = []

    def trace(*args: Any) -> None:
        started.append(threading.current_thread().name)

    threading.settrace(trace)
    try:
        yield started
    finally:
        threading.settrace(None)  # type: ignore[arg-type]


def test_without_help_a_large_message_is_read_on_the_callers_thread_with_the_collector_on(
    large: DSOPortfolioUpdate,
) -> None:
    data = codec.encode(large)
    collections: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        collections.append(phase)

    gc.callbacks.append(seen)
    try:
        with threads_started() as started:
            assert codec.decode(data) == large
    finally:
        gc.callbacks.remove(seen)
    assert started == []
    assert gc.isenabled()
    assert "start" in collections  # 20,000 rows woke the collector: nobody paused it


class CountingExecutor(ThreadPoolExecutor):
    """A real pool that counts what it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="test-validate")
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_with_help_the_schema_is_checked_on_the_lent_thread_while_the_rows_are_built(
    large: DSOPortfolioUpdate,
) -> None:
    data = codec.encode(large)
    entered: list[bool] = []

    @contextmanager
    def building() -> Iterator[None]:
        entered.append(gc.isenabled())
        yield

    with CountingExecutor() as executor:
        bulk = codec.Bulk(executor=executor, building=building)
        assert codec.decode(data, bulk=bulk) == large
        assert (executor.submitted, entered) == (1, [True])
        # A message below the threshold is read without the help.
        assert codec.decode(codec.encode(portfolio(1, 3)), bulk=bulk) == portfolio(1, 3)
        assert (executor.submitted, len(entered)) == (1, 1)


def test_the_endpoints_help_pauses_the_collector_only_while_rows_are_built(
    large: DSOPortfolioUpdate,
) -> None:
    data = codec.encode(large)
    states: list[bool] = []
    pause = LARGE_MESSAGES.building

    @contextmanager
    def watched() -> Iterator[None]:
        with pause():
            states.append(gc.isenabled())
            yield

    bulk = dataclasses.replace(LARGE_MESSAGES, building=watched)
    assert codec.decode(data, bulk=bulk) == large
    assert states == [False]
    assert gc.isenabled()
