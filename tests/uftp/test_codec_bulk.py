"""Large portfolio updates: the column-wise connection reader, the streamed reading of a
DSOPortfolioUpdate and the concurrent validation of the other large messages.

Above `CONCURRENT_VALIDATION_BYTES`, and only when the caller lends the help (`codec.Bulk`;
the endpoint's is `adapter.bulk.LARGE_MESSAGES`), with the garbage collector paused while
the model is built, a DSOPortfolioUpdate is read as a stream: each CongestionPoint read
column-wise and dropped as soon as it is complete, the schema checked on the parser's events.
These tests hold that reading to the tree's: the same models and the same refusals, in the
same words, nothing returned of a document the schema refuses, and no more of the tree kept
than the congestion point being read. Other large messages (an AGRPortfolioUpdate) are
still checked on the lent thread while the model is read from the tree; the plain reading
takes no thread and leaves the collector alone.
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
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
)
from tests.uftp.samples import make_agr_portfolio_update, make_dso_portfolio_update

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


def agr_portfolio(connections: int) -> AGRPortfolioUpdate:
    return dataclasses.replace(
        make_agr_portfolio_update(),
        connections=tuple(
            AGRPortfolioUpdateConnection(f"ean.8716859{j:011d}", START) for j in range(connections)
        ),
    )


def test_with_help_a_dso_update_is_streamed_and_other_messages_validated_on_the_lent_thread(
    large: DSOPortfolioUpdate,
) -> None:
    entered: list[bool] = []

    @contextmanager
    def building() -> Iterator[None]:
        entered.append(gc.isenabled())
        yield

    agr = agr_portfolio(20_000)
    agr_data = codec.encode(agr)
    assert len(agr_data) > codec.CONCURRENT_VALIDATION_BYTES
    with CountingExecutor() as executor:
        bulk = codec.Bulk(executor=executor, building=building)
        # The DSOPortfolioUpdate is validated on the parser's events, on this thread.
        with threads_started() as started:
            assert codec.decode(codec.encode(large), bulk=bulk) == large
        assert (started, executor.submitted, entered) == ([], 0, [True])
        # An AGRPortfolioUpdate is read from the tree while the lent thread validates it.
        assert codec.decode(agr_data, bulk=bulk) == agr
        assert (executor.submitted, entered) == (1, [True, True])
        # A message below the threshold is read without the help.
        assert codec.decode(codec.encode(portfolio(1, 3)), bulk=bulk) == portfolio(1, 3)
        assert (executor.submitted, len(entered)) == (1, 2)


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


# -- the streamed reading of a DSOPortfolioUpdate: the tree's results, less of the tree --------

#: The endpoint's help, lent for every size: each message is read as a large one.
STREAMED = dataclasses.replace(LARGE_MESSAGES, threshold=0)


def mixed() -> DSOPortfolioUpdate:
    """Congestion points of 1, 63, 64 and 700 connections (read element by element below 64,
    column-wise from there), EndPeriods on some connections and some congestion points."""
    points = [
        dataclasses.replace(portfolio(1, size, end_every=end).congestion_points[0], **changes)
        for size, end, changes in [
            (1, 0, {}),
            (63, 5, {"entity_address": "ea1.2025-01.nl.example:cp-63"}),
            (64, 1, {"entity_address": "ea1.2025-01.nl.example:&<\"'"}),
            (700, 0, {"intraday_redispatch_by": None}),
            (700, 9, {"end_period": date(2025, 2, 1)}),
        ]
    ]
    return dataclasses.replace(make_dso_portfolio_update(), congestion_points=tuple(points))


@pytest.mark.parametrize(
    "message",
    [
        portfolio(3, 1000),
        portfolio(3, 1000, end_every=1),
        portfolio(4, 300, end_every=7),
        mixed(),
        make_dso_portfolio_update(),
        make_dso_portfolio_update(version="3.0.0"),
        make_dso_portfolio_update(version="4.0.0"),
    ],
    ids=["plain", "all end", "some end", "mixed", "sample", "3.0.0", "draft"],
)
def test_a_streamed_dso_update_equals_the_tree_reading(message: DSOPortfolioUpdate) -> None:
    data = codec.encode(message)
    assert codec.decode(data, bulk=STREAMED) == message == codec.decode(data)


def test_streamed_lexical_forms_read_as_the_tree_reads_them() -> None:
    """Attributes in another order, single quotes, references, a date with a time zone,
    EndPeriod equal to StartPeriod, comments and blanks between the elements."""
    data = codec.encode(portfolio(2, 100, end_every=3))
    data = re.sub(
        rb'<Connection EntityAddress="([^"]*)" StartPeriod="([^"]*)" EndPeriod="([^"]*)"/>',
        rb"<Connection EndPeriod='2025-01-01Z' StartPeriod='\2' EntityAddress='\1' />",
        data,
    )
    data = data.replace(b"<Connection ", b"<!-- a comment -->\n  <Connection ", 40)
    data = data.replace(b':cp-1"', b':cp&#45;1"')
    assert data.count(b"EndPeriod='") == 68
    tree = codec.decode(data)
    assert codec.decode(data, bulk=STREAMED) == tree
    assert isinstance(tree, DSOPortfolioUpdate)
    assert tree.congestion_points[1].connections[0].end_period == START


def _refusal(data: bytes, bulk: codec.Bulk | None) -> str:
    """What the refusal says, but where: a violation found on the parser's events has no
    line, and libxml2 words the position of a syntax error its own way in each reading."""
    with pytest.raises(InvalidXml) as refused:
        codec.decode(data, bulk=bulk)
    return re.sub(r" \(line \d+\)|, line \d+.*", "", str(refused.value))


def _sample(end_every: int = 0) -> bytes:
    return codec.encode(portfolio(3, 200, end_every=end_every))


FIRST_ROW = b'<Connection EntityAddress="ean.871685900000000000" StartPeriod="2025-01-01"'
LAST_ROW = b'<Connection EntityAddress="ean.871685900002000199" StartPeriod="2025-01-01"'


@pytest.mark.parametrize("row", [FIRST_ROW, LAST_ROW], ids=["first point", "last point"])
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'EntityAddress="ean.', b'EntityAddress="eam.'),  # the pattern
        (b'StartPeriod="2025-01-01"', b'StartPeriod="2025-13-01"'),  # not a date
        (b'StartPeriod="2025-01-01"', b""),  # a required attribute missing
        (b'StartPeriod="2025-01-01"', b'StartPeriod="2025-01-01" Extra="1"'),  # unknown
        (b'StartPeriod="2025-01-01"', b'StartPeriod="10000-01-01"'),  # beyond `date`
        (b"<Connection ", b"<Connections "),  # an element the type has not
    ],
    ids=["address", "date", "missing", "extra", "year", "element"],
)
def test_a_stream_refuses_what_the_tree_reading_refuses_in_the_same_words(
    row: bytes, old: bytes, new: bytes
) -> None:
    """In the first congestion point, read while the rest is not yet validated, and in the
    last, read once the document has ended: no model, and the same refusal."""
    data = _sample()
    assert data.count(row) == 1
    data = data.replace(row, row.replace(old, new, 1))
    assert _refusal(data, STREAMED) == _refusal(data, None)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b' DayAheadRedispatchBy="DSO"', b' DayAheadRedispatchBy="CRO"'),  # enumeration
        (b' MutexOffersSupported="false"', b""),  # required on the congestion point
        (b"</CongestionPoint>", b"</CongestionPoint><CongestionPoint/>"),  # no connection
        (b"</CongestionPoint>", b"</CongestionPoint>" + FIRST_ROW + b"/>"),  # not in a point
        (b' TimeZone="', b' TimeZone="Europe/Amsterdam" Was="'),  # on the root
        (b' EndPeriod="2025-06-30"', b' EndPeriod="2025-06-31"'),  # an EndPeriod
        (b'<?xml version="1.0" encoding="UTF-8"?>', b'<?xml version="1.0"?><!DOCTYPE x>'),
    ],
    ids=["enumeration", "missing", "empty point", "stray row", "root", "end", "doctype"],
)
def test_a_stream_refuses_invalid_points_in_the_same_words(old: bytes, new: bytes) -> None:
    data = _sample(end_every=7)
    assert old in data
    data = data.replace(old, new, 1)
    assert _refusal(data, STREAMED) == _refusal(data, None)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<DSOPortfolioUpdate ", b'<DSOPortfolioUpdate xmlns="urn:x" '),  # a namespace
        (b"<DSOPortfolioUpdate ", b'<u:DSOPortfolioUpdate xmlns:u="urn:x" '),  # a prefix
        (b'Version="3.1.0"', b'Version="3.1&#46;0"'),  # read from the tree, valid
        (b"</DSOPortfolioUpdate>", b"</DSOPortfolioUpdate"),  # malformed at the end
        (b"</CongestionPoint></DSOPortfolioUpdate>", b"</CongestionPoint>"),  # cut short
        (b"</DSOPortfolioUpdate>", b"</DSOPortfolioUpdate><!--"),  # a comment left open
        (b"</DSOPortfolioUpdate>", b"</DSOPortfolioUpdate> <"),  # after the root
        (b"</CongestionPoint>", b"</CongestionPont>"),  # malformed
    ],
    ids=["namespace", "prefix", "reference", "unclosed", "cut", "comment", "after", "mismatch"],
)
def test_an_odd_root_or_malformed_update_reads_as_the_tree_reads_it(old: bytes, new: bytes) -> None:
    data = _sample()
    assert old in data
    data = data.replace(old, new, 1)
    try:
        tree = codec.decode(data)
    except InvalidXml:
        refused = _refusal(data, None)
        streamed = _refusal(data, STREAMED)
        if refused.startswith("not well-formed XML"):
            # Malformed and, up to there, invalid: the stream may name what it met first.
            assert streamed.startswith(("not well-formed XML", "not valid against"))
        else:
            assert streamed == refused
    else:
        assert codec.decode(data, bulk=STREAMED) == tree


def test_a_streamed_update_keeps_one_congestion_point_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No tree of the whole document: each congestion point is read with none before it
    left in the tree, and the root is left without any. (A comment keeps the update from
    being read from its bytes: `test_scan` holds that reading to this one.)"""
    message = portfolio(30, 1000)
    data = codec.encode(message).replace(b"</CongestionPoint>", b"<!-- --></CongestionPoint>")
    seen: list[tuple[bool, int]] = []
    read_point = codec._streamed_dso_point

    def spy(cp: Any) -> DSOPortfolioUpdateCongestionPoint:
        seen.append((cp.getprevious() is None, len(cp)))
        return read_point(cp)

    roots: list[Any] = []
    stream = codec.stream_children

    def stream_spy(*args: Any, **kwargs: Any) -> Any:
        root, children = stream(*args, **kwargs)
        roots.append(root)
        return root, children

    def no_tree(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the whole document parsed into a tree")

    monkeypatch.setattr(codec, "_streamed_dso_point", spy)
    monkeypatch.setattr(codec, "stream_children", stream_spy)
    monkeypatch.setattr(codec, "parse_xml", no_tree)
    assert codec.decode(data, bulk=LARGE_MESSAGES) == message
    assert seen == [(True, 1000)] * 30
    assert [len(root) for root in roots] == [0]
