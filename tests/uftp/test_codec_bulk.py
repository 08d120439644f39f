"""Large portfolio updates: the column-wise connection reader and concurrent validation.

Above `CONCURRENT_VALIDATION_BYTES` the schema is checked on a second thread while the model
is read; these tests hold that path to the same results as the plain one.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date

import pytest

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
    assert codec.decode(swapped) == large


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
    assert codec.decode(data) == message


def test_invalid_row_deep_in_a_large_update_is_refused_by_the_schema(
    large: DSOPortfolioUpdate,
) -> None:
    data = codec.encode(large)
    broken = data.replace(b'EntityAddress="ean.871685900015000500"', b'EntityAddress="ean.12"')
    assert broken != data
    with pytest.raises(InvalidXml, match="schema"):
        codec.decode(broken)


def test_invalid_date_deep_in_a_large_update_names_the_schema_problem(
    large: DSOPortfolioUpdate,
) -> None:
    data = codec.encode(large)
    broken = data.replace(b'StartPeriod="2025-01-01"/>', b'StartPeriod="2025-13-01"/>', 1)
    with pytest.raises(InvalidXml, match="schema"):
        codec.decode(broken)
