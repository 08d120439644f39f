"""The column-wise Connection reader: every row in place, or None so that the codec reads the
rows element by element. Its results are compared with that element-by-element reading."""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading
from datetime import date

import pytest

from adapter.bulk import LARGE_MESSAGES
from adapter.uftp import codec
from adapter.uftp.columns import ConnectionColumns
from adapter.uftp.errors import InvalidXml
from adapter.uftp.messages import AGRPortfolioUpdateConnection, DSOPortfolioUpdateConnection
from adapter.uftp.xml import parse_xml
from tests.uftp.samples import make_agr_portfolio_update
from tests.uftp.test_codec_bulk import portfolio

DSO = ConnectionColumns("*/Connection", DSOPortfolioUpdateConnection, codec._date)
AGR = ConnectionColumns("Connection", AGRPortfolioUpdateConnection, codec._date)
START = "2025-01-01"


def dso_rows(data: bytes) -> list[DSOPortfolioUpdateConnection] | None:
    root = parse_xml(data, huge=True)
    return DSO.rows(root, len(root.findall("*/Connection")))


def by_element(data: bytes) -> list[DSOPortfolioUpdateConnection]:
    """The rows read one element at a time, by attribute name."""
    root = parse_xml(data, huge=True)
    return [
        DSOPortfolioUpdateConnection(
            c.get("EntityAddress"),
            date.fromisoformat(c.get("StartPeriod")),
            date.fromisoformat(c.get("EndPeriod")) if c.get("EndPeriod") else None,
        )
        for c in root.iterfind("*/Connection")
    ]


@pytest.mark.parametrize("end_every", [0, 1, 2, 7, 999])
def test_rows_with_and_without_end_periods_are_read_in_place(end_every: int) -> None:
    data = codec.encode(portfolio(5, 200, end_every=end_every))
    rows = dso_rows(data)
    assert rows is not None
    assert rows == by_element(data)
    assert sum(row.end_period is not None for row in rows) == (
        0 if not end_every else 5 * len(range(0, 200, end_every))
    )


ATTRIBUTES = ("EntityAddress", "StartPeriod", "EndPeriod")


def rewritten(data: bytes, order: tuple[str, ...], end: str) -> bytes:
    """Every Connection with an EndPeriod of `end` (and StartPeriod 2025-01-01), its
    attributes written in `order`."""

    def connection(match: re.Match[bytes]) -> bytes:
        values = {"EntityAddress": match[1].decode(), "StartPeriod": START, "EndPeriod": end}
        attributes = " ".join(f'{name}="{values[name]}"' for name in order)
        return f"<Connection {attributes}/>".encode()

    return re.sub(rb'<Connection EntityAddress="([^"]*)"[^>]*/>', connection, data)


@pytest.mark.parametrize("order", list(itertools.permutations(ATTRIBUTES)))
@pytest.mark.parametrize("end", ["2025-06-30", START])
def test_any_attribute_order_is_read_right(order: tuple[str, ...], end: str) -> None:
    message = portfolio(3, 40, end_every=3)
    data = codec.encode(message)
    # One connection in three keeps its own attributes, the others get an EndPeriod in `order`.
    mixed = b"".join(
        rewritten(part, order, end) if i % 3 else part
        for i, part in enumerate(re.split(rb"(?=<Connection )", data))
    )
    assert mixed != data
    rows = dso_rows(mixed)
    # Never a row out of place: either all are right, or none is given and the codec reads
    # element by element. With the address first, the reader always finds its way.
    assert rows is None or rows == by_element(mixed)
    if order[0] == "EntityAddress":
        assert rows is not None
    decoded = codec.decode(mixed)
    assert isinstance(decoded, type(message))
    got = [c for cp in decoded.congestion_points for c in cp.connections]
    assert got == by_element(mixed)
    assert {c.end_period for c in got} >= {date.fromisoformat(end)}


def test_a_stray_attribute_is_not_taken_for_an_end_period() -> None:
    data = codec.encode(portfolio(2, 30, end_every=4))
    root = parse_xml(data, huge=True)
    total = len(root.findall("*/Connection"))
    assert DSO.rows(root, total) is not None
    # Schema-invalid, as the tree may be while the schema is still checking it on another
    # thread: one value too many, and no EndPeriod line to account for it.
    root[0][1].set("Stray", "2025-01-01")
    assert DSO.rows(root, total) is None


def test_a_stray_attribute_in_a_large_update_is_refused_by_the_schema() -> None:
    data = codec.encode(portfolio(20, 1000, end_every=7))
    assert len(data) > codec.CONCURRENT_VALIDATION_BYTES
    broken = data.replace(b'StartPeriod="2025-01-01"/>', b'StartPeriod="2025-01-01" X="1"/>', 1)
    with pytest.raises(InvalidXml, match="schema"):
        codec.decode(broken, bulk=LARGE_MESSAGES)


def test_an_empty_end_period_in_a_large_update_is_refused_by_the_schema() -> None:
    data = codec.encode(portfolio(20, 1000, end_every=7))
    broken = data.replace(b'EndPeriod="2025-06-30"', b'EndPeriod=""', 1)
    with pytest.raises(InvalidXml, match="schema"):
        codec.decode(broken, bulk=LARGE_MESSAGES)


def test_a_large_agr_update_is_read_column_wise_and_round_trips() -> None:
    connections = tuple(
        AGRPortfolioUpdateConnection(
            f"ean.8716859{i:011d}", date(2025, 1, 1), date(2025, 3, 31) if i % 5 == 0 else None
        )
        for i in range(30_000)
    )
    message = dataclasses.replace(make_agr_portfolio_update(), connections=connections)
    data = codec.encode(message)
    assert len(data) > codec.CONCURRENT_VALIDATION_BYTES
    root = parse_xml(data, huge=True)
    assert AGR.rows(root, len(root)) == list(connections)
    assert codec.decode(data, bulk=LARGE_MESSAGES) == message


def test_the_reader_gives_the_same_rows_on_several_threads_at_once() -> None:
    data = codec.encode(portfolio(2, 50, end_every=3))
    expected = dso_rows(data)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(dso_rows(data))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert expected is not None
    assert results == [expected] * 4
