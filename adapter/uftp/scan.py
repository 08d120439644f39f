"""Reading a large Metering, FlexSettlement or DSOPortfolioUpdate from its validated bytes.

A year of 15-minute ISPs for 100 connections is 3.5 million ISP elements; a settlement of
10,000 orders, 50,000 elements. Read through lxml, each costs a Python proxy object, an
attribute look-up per value and a `Decimal` or an `int`; the tree beside them takes several
times the bytes of the document (bench/README.md). Here libxml2 parses and validates without
building any tree (`xml.validate_stream`), and the values are then taken from the bytes by
regular expressions, at C speed, and kept as text where there are millions of them.

That reading is exact only for content written plainly, which is what every participant
writes; anything else is left to the element reading (None):

- After the root's start tag, no "&" (so no entity or character reference: an attribute
  value is the bytes between its quotes), no "'" (every value is between double quotes, and
  none holds a double quote), no "!" (no comment, no CDATA section) and no "?" (no
  processing instruction). Then every "<" opens a tag or an end tag (XML 1.0: a "<" is not
  allowed in an attribute value, and the schema allows no text between elements). A value
  that holds a "!" or a "?" is read element by element too: checking a byte is cheap,
  checking for "<!" is not.
- A Metering Profile's ISPs are read a column at a time: ` Start="` and ` Value="` (a space
  before the name, none around the "=") are found as often as "<ISP" in the profile. The
  schema requires both attributes of every ISP and allows no other, and neither name can
  end a value of the other (numbers), so a count that differs means a way of writing this
  does not read.
- A FlexOrderSettlement is matched whole, its start tag attribute by attribute and its ISP
  elements as text, by one expression that must find as many as there are
  "<FlexOrderSettlement" before the first ContractSettlement (the XSD's sequence puts them
  all first). The orders are built a field at a time for all of them (`_maker`); their
  ISPs are kept as their text (`messages.FlexOrderSettlementISPs`), every value an integer
  the schema has checked.
- A DSOPortfolioUpdate is read a CongestionPoint at a time, only its bytes decoded, its start
  tag attribute by attribute. Its Connections are found by one expression that must match
  as many times as "<Connection" occurs in it: first one that takes the EntityAddress alone
  where every connection starts on the first one's Period and none ends (as a portfolio
  mostly is: one string a connection, no tuple), then one that takes all three attributes in
  the XSD's order, then, for any other order or spacing, each start tag attribute by
  attribute. 100,000 connections cost no tree and no lock hand-off per element
  (bench/README.md, bench_flex).

The root's start tag, which may hold anything XML allows, is parsed by libxml2. Values keep
the line ends and tabs that attribute-value normalisation would turn into spaces where the
schema allows them around a number only, which `int` and `Decimal` ignore as they ignore
spaces; text values are normalised as a parser does.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from datetime import date
from decimal import Decimal
from functools import lru_cache
from itertools import repeat
from typing import Any, TypeVar, cast

from .messages import (
    DSOPortfolioUpdateConnection,
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexOrderSettlementISPs,
    MeteringISPs,
    MeteringProfile,
    MeteringProfileEnum,
    MeteringUnit,
)

T = TypeVar("T")

_S = rb"[ \t\r\n]"
#: What may come before the root element: a byte order mark, white space, the XML
#: declaration, processing instructions and comments (XML 1.0, [22], [27]).
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:" + _S + rb"+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
#: A start tag: its name and its attributes, each value between either kind of quote.
_START_TAG = re.compile(
    rb"<([^ \t\r\n/>]+)((?:" + _S + rb"+[^ \t\r\n=/>]+" + _S + rb"*=" + _S + rb"*"
    rb"(?:\"[^\"]*\"|'[^']*'))*)" + _S + rb"*>"
)
#: The attributes of a plainly written start tag, after its name.
_ATTRIBUTES = rb"((?:" + _S + rb"+[^ \t\r\n=/>]+" + _S + rb"*=" + _S + rb'*"[^"]*")*)' + _S
#: One attribute among those.
_ATTRIBUTE = re.compile(_S + rb"+([^ \t\r\n=]+)" + _S + rb"*=" + _S + rb'*"([^"]*)"')
#: The same, read from the start tag's text.
_ATTRIBUTE_TEXT = re.compile(_ATTRIBUTE.pattern.decode())
#: Attribute-value normalisation (XML 1.0, 3.3.3), after line-end normalisation.
_NORMALISED = str.maketrans("\t\n\r", "   ")
#: What makes the bytes after the root's start tag other than plain (see the module).
_NOT_PLAIN = (b"&", b"'", b"!", b"?")


def plain_content(data: bytes) -> tuple[bytes, int] | None:
    """The root's start tag, closed as an empty element (`<Metering ... />`, for
    `xml.parse_xml` to read once the whole is found valid), and where the root's content
    starts in `data`; None if the content is not written plainly."""
    prolog = _PROLOG.match(data)
    tag = _START_TAG.match(data, prolog.end() if prolog else 0)
    if tag is None:
        return None
    body = tag.end()
    if any(data.find(marker, body) >= 0 for marker in _NOT_PLAIN):
        return None
    return b"<" + tag[1] + tag[2] + b"/>", body


def _attributes(tag: bytes) -> dict[str, str]:
    """The attributes of a plainly written start tag (after its name), as a parser reads
    them."""
    return _text_attributes(tag.decode())


def _text_attributes(tag: str) -> dict[str, str]:
    """`_attributes` of a start tag already decoded."""
    pairs = _ATTRIBUTE_TEXT.findall(tag)
    if "\t" in tag or "\n" in tag or "\r" in tag:
        return {name: value.replace("\r\n", "\n").translate(_NORMALISED) for name, value in pairs}
    return dict(pairs)


# --- Metering -------------------------------------------------------------------------------

_PROFILE_TAG = re.compile(rb"<Profile" + _ATTRIBUTES + rb"*>")
_ISP_START = re.compile(rb' Start="([^"]*)"')
_ISP_VALUE = re.compile(rb' Value="([^"]*)"')
_PROFILE_TYPES: dict[str, MeteringProfileEnum] = {m.value: m for m in MeteringProfileEnum}
_UNITS: dict[str, MeteringUnit] = {m.value: m for m in MeteringUnit}


@lru_cache(maxsize=8)
def _counting(count: int) -> list[bytes]:
    """b"1" to the ISP count, as ISP numbers are written."""
    return [b"%d" % number for number in range(1, count + 1)]


def metering_profiles(data: bytes, body: int) -> list[MeteringProfile] | None:
    """The Profiles of a valid Metering message whose content starts at `body`, each with
    its ISPs column-wise; None if they are not written as this reads them.

    Raises ValueError for an ISP number beyond what `int` reads (over 4,300 digits)."""
    profiles: list[MeteringProfile] = []
    position = body
    while (start := data.find(b"<Profile", position)) >= 0:
        tag = _PROFILE_TAG.match(data, start)
        if tag is None:
            return None
        attributes = _attributes(tag[1])
        end = data.find(b"</Profile", tag.end())
        count = data.count(b"<ISP", tag.end(), end)
        starts = _ISP_START.findall(data, tag.end(), end)
        values = _ISP_VALUE.findall(data, tag.end(), end)
        if len(starts) != count or len(values) != count or len(attributes) != 2:
            return None
        numbers = range(1, count + 1) if starts == _counting(count) else tuple(map(int, starts))
        profiles.append(
            MeteringProfile(
                profile_type=_PROFILE_TYPES[attributes["ProfileType"]],
                unit=_UNITS[attributes["Unit"]],
                isps=MeteringISPs(numbers, tuple(values)),
            )
        )
        position = end
    return profiles


# --- DSOPortfolioUpdate ---------------------------------------------------------------------

#: The attributes of a plainly written start tag, read from its text (as `_ATTRIBUTES`).
_TEXT_ATTRIBUTES = _ATTRIBUTES.decode()
#: A CongestionPoint's start tag: its attributes.
_POINT_TAG = re.compile(r"<CongestionPoint" + _TEXT_ATTRIBUTES + r"*>")
#: A Connection as participants write it: its attributes in the XSD's order, single spaces
#: between them, no tab or line end in the EntityAddress (which a parser would read as a
#: space). The EndPeriod is "" where it is left out: no xs:date is empty.
_CONNECTION_IN_ORDER = re.compile(
    r'<Connection EntityAddress="([^"\t\n\r]*)" StartPeriod="([^"]*)"'
    r'(?: EndPeriod="([^"]*)")?' + _S.decode() + r"*/?>"
)
#: The same without an EndPeriod: its EntityAddress alone (one string, no tuple).
_ADDRESS_ONLY = re.compile(
    r'<Connection EntityAddress="([^"\t\n\r]*)" StartPeriod="[^"]*"' + _S.decode() + r"*/?>"
)
#: A Connection's start tag written any other way: its attributes.
_CONNECTION = re.compile(r"<Connection" + _TEXT_ATTRIBUTES + r"*/?>")

P = TypeVar("P")


def portfolio_points(
    data: bytes,
    body: int,
    read_date: Callable[[str], date],
    point: Callable[[dict[str, str], tuple[DSOPortfolioUpdateConnection, ...]], P],
) -> list[P] | None:
    """The CongestionPoints of a valid DSOPortfolioUpdate whose content starts at `body`,
    each made by `point` from its attributes and its connections, one congestion point at a
    time: only its text is decoded and its values held meanwhile, so that what this reads
    beside the models stays the size of one congestion point. None if they are not written
    as this reads them. Periods are read by `read_date`.

    Raises ValueError for a value Python's types do not hold, for the first such value in
    the order the element reading meets them (a point's connections, then the point)."""
    points: list[P] = []
    position = body
    while (start := data.find(b"<CongestionPoint", position)) >= 0:
        end = data.find(b"</CongestionPoint", start)
        if end < 0:
            return None
        # Valid, so UTF-8 (`xml.validate_stream` reads every message as UTF-8).
        text = data[start:end].decode()
        tag = _POINT_TAG.match(text)
        connections = None if tag is None else _connections(text, tag.end(), read_date)
        if tag is None or connections is None:
            return None
        points.append(point(_text_attributes(tag[1]), connections))
        position = end
    return points


def _connections(
    text: str, begin: int, read_date: Callable[[str], date]
) -> tuple[DSOPortfolioUpdateConnection, ...] | None:
    """The Connections of one congestion point's `text` after its start tag (`begin`),
    column-wise; None if they are not written as this reads them.

    The schema allows EntityAddress, StartPeriod and the optional EndPeriod on a Connection
    and no other attribute (XSD: DSOPortfolioUpdateConnectionType, the same in 3.0.0, 3.1.0
    and the draft), and no "<" is allowed in an attribute value (XML 1.0): every "<Connection"
    opens one."""
    count = text.count("<Connection", begin)
    first = _CONNECTION_IN_ORDER.search(text, begin)
    if first is not None and not first[3]:
        # All starting on one Period with none ending, as a portfolio mostly is: the
        # EntityAddresses alone are taken, one string a connection and no tuple.
        # The first's StartPeriod as often as there are connections, each written as
        # `_ADDRESS_ONLY` reads it: each has it (its quotes are the only ones about it).
        alike = _ADDRESS_ONLY.findall(text, begin)
        if len(alike) == count == text.count(f' StartPeriod="{first[2]}"', begin):
            day = read_date(first[2])
            return tuple(
                map(
                    tuple.__new__,
                    repeat(DSOPortfolioUpdateConnection),
                    zip(alike, repeat(day), repeat(None)),
                )
            )
    found: list[tuple[str, str, str]] = _CONNECTION_IN_ORDER.findall(text, begin)
    if len(found) != count:
        found = [_connection(tag) for tag in _CONNECTION.findall(text, begin)]
        if len(found) != count:
            return None
    if not found:
        return None
    addresses, starts, ends = zip(*found, strict=True)
    try:
        # Few distinct days among a thousand periods: each read once.
        days = {value: read_date(value) for value in dict.fromkeys(starts)}
        stops = {value: read_date(value) if value else None for value in dict.fromkeys(ends)}
    except ValueError:
        # The one the element reading names: the first in the document.
        for _, start, stop in found:
            read_date(start)
            if stop:
                read_date(stop)
        raise
    # tuple.__new__ stands in for the NamedTuple's constructor, at C speed.
    return tuple(
        map(
            tuple.__new__,
            repeat(DSOPortfolioUpdateConnection),
            zip(
                addresses, map(days.__getitem__, starts), map(stops.__getitem__, ends), strict=True
            ),
        )
    )


def _connection(tag: str) -> tuple[str, str, str]:
    """A Connection's EntityAddress, StartPeriod and EndPeriod ("" where there is none)
    from the attributes of its start tag."""
    get = _text_attributes(tag).get
    return get("EntityAddress", ""), get("StartPeriod", ""), get("EndPeriod", "")


# --- FlexSettlement -------------------------------------------------------------------------

#: The content of a FlexOrderSettlement and its end tag: the text of its ISP elements (which
#: may be written empty or with an end tag, blanks between them).
_ORDER_ISPS = (
    rb"*>([^<]*(?:<ISP[^>]*>[^<]*(?:</ISP"
    + _S
    + rb"*>[^<]*)?)*)</FlexOrderSettlement"
    + _S
    + rb"*>"
)
#: A whole FlexOrderSettlement: its start tag's attributes and its ISPs.
_ORDER = re.compile(rb"<FlexOrderSettlement" + _ATTRIBUTES + _ORDER_ISPS)
#: The same, its attributes in the XSD's order, single spaces between them, as participants
#: write them: one value a group. The optional text values keep their opening quote, so that
#: an empty value ("") is told from none. A text value may hold a tab or a line end, which
#: `_normalised` turns into spaces afterwards: excluding them here cost a tenth of the
#: expression's time (bench/README.md).
_ORDER_IN_ORDER = re.compile(
    rb'<FlexOrderSettlement(?: OrderReference=("[^"]*)")? Period="([^"]*)"'
    rb'(?: ContractID=("[^"]*)")?(?: D-PrognosisMessageID="([^"]*)")?'
    rb'(?: BaselineReference=("[^"]*)")? CongestionPoint="([^"]*)"'
    rb' Price="([^"]*)"(?: Penalty="([^"]*)")? NetSettlement="([^"]*)"' + _S + _ORDER_ISPS
)


def _maker(cls: type[T]) -> Callable[[int, Sequence[Iterable[object]]], list[T]]:
    """What makes `count` instances of the frozen, slotted dataclass `cls` from a column of
    values for each of its fields, in their order, without its generated `__init__`: that
    calls object.__setattr__ by name for each field, and took a third of the time of reading
    10,000 orders. Here each field's slot is set a column at a time, by C-level calls of its
    descriptor, a quarter of what setting them an instance at a time cost (bench/README.md).
    For a class whose `__init__` does nothing else (no `__post_init__`).

    A column is a sequence or `repeat(value, count)`: each must hold `count` values, so
    that no slot is left unset (ValueError otherwise, before any is made)."""
    if hasattr(cls, "__post_init__") or not hasattr(cls, "__slots__"):
        raise TypeError(f"{cls.__name__} needs its __init__")
    setters = [vars(cls)[field.name].__set__ for field in fields(cast(Any, cls))]
    new = object.__new__

    def make(count: int, columns: Sequence[Iterable[object]]) -> list[T]:
        if len(columns) != len(setters) or any(
            operator.length_hint(column, -1) != count for column in columns
        ):
            raise ValueError(f"{cls.__name__}: a column for each field, {count} values each")
        made = list(map(new, repeat(cls, count)))
        for setter, column in zip(setters, columns, strict=True):
            deque(map(setter, made, column), 0)
        return made

    return make


#: FlexOrderSettlements from columns of order_reference, period, contract_id,
#: d_prognosis_message_id, baseline_reference, congestion_point, price, penalty,
#: net_settlement and isps.
_orders = _maker(FlexOrderSettlement)

#: Above this many bytes an order's ISPs may hold a number `int` does not read: its rows are
#: made at once, so that the reading fails now rather than when they are asked for.
_LONG_ISPS = 4_000
_ZERO = Decimal(0)


def order_settlements(
    data: bytes, body: int, read_date: Callable[[str], date]
) -> tuple[list[FlexOrderSettlement], int] | None:
    """The FlexOrderSettlements of a valid FlexSettlement whose content starts at `body`,
    and where its ContractSettlements start; None if the orders are not written as this
    reads them. Periods are read by `read_date`.

    Raises ValueError for a value Python's types do not hold, as the element reading does."""
    contracts = data.find(b"<ContractSettlement", body)
    if contracts < 0:
        return None
    count = data.count(b"<FlexOrderSettlement", body, contracts)
    in_order = _ORDER_IN_ORDER.findall(data, body, contracts)
    if len(in_order) == count:
        return _in_order(in_order, read_date), contracts
    found = _ORDER.findall(data, body, contracts)
    if len(found) != count:
        return None
    rows = []
    for tag, isps in found:
        get = _attributes(tag).get
        penalty = get("Penalty")
        rows.append(
            (
                get("OrderReference"),
                read_date(get("Period", "")),
                get("ContractID"),
                get("D-PrognosisMessageID"),
                get("BaselineReference"),
                get("CongestionPoint", ""),
                Decimal(get("Price", "")),
                _ZERO if penalty is None else Decimal(penalty),
                Decimal(get("NetSettlement", "")),
                isps,
            )
        )
    columns: list[Sequence[object]] = list(zip(*rows, strict=True))
    columns[-1] = _isps(cast(tuple[bytes, ...], columns[-1]))
    return _orders(count, columns), contracts


def _in_order(
    found: list[tuple[bytes, ...]], read_date: Callable[[str], date]
) -> list[FlexOrderSettlement]:
    """The orders `_ORDER_IN_ORDER` found, built a column at a time: each column decoded and
    converted at C speed."""
    (reference, period, contract, prognosis, baseline, point, price, penalty, net, isps) = zip(
        *found, strict=True
    )
    count = len(found)
    return _orders(
        count,
        (
            _optional(_normalised(reference), quoted=True),
            _by_value(period, lambda raw: read_date(raw.decode())),
            _optional(_normalised(contract), quoted=True),
            _optional(prognosis, quoted=False),
            _optional(_normalised(baseline), quoted=True),
            _by_value(_normalised(point), bytes.decode),
            _decimals(price),
            _penalties(penalty),
            _decimals(net),
            _isps(isps),
        ),
    )


def _by_value(column: tuple[bytes, ...], read: Callable[[bytes], T]) -> list[T]:
    """`read` of each value of a column whose values repeat (a month's Periods, a DSO's
    congestion points), made once a distinct value, in the order they first occur (so that
    a value `read` refuses is the one the element reading meets first); the orders share
    what is made."""
    made = {raw: read(raw) for raw in dict.fromkeys(column)}
    return list(map(made.__getitem__, column))


#: Attribute-value normalisation of bytes, after line-end normalisation (`_NORMALISED`).
_NORMALISED_BYTES = bytes.maketrans(b"\t\n\r", b"   ")


def _normalised(column: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """A text attribute's raw values as a parser reads them: a tab or a line end, which
    attribute-value normalisation turns into a space (XML 1.0, 3.3.3), looked for in all of
    them at once, at C speed."""
    joined = b"".join(column)
    if b"\t" in joined or b"\n" in joined or b"\r" in joined:
        return tuple(value.replace(b"\r\n", b"\n").translate(_NORMALISED_BYTES) for value in column)
    return column


def _decimals(column: tuple[bytes, ...]) -> list[Decimal]:
    return list(map(Decimal, map(bytes.decode, column)))


def _optional(column: tuple[bytes, ...], *, quoted: bool) -> Iterable[str | None]:
    """An optional attribute's values, None where it is left out (b""); `quoted` values
    start with their opening quote."""
    if not any(column):
        return repeat(None, len(column))
    start = 1 if quoted else 0
    return [value[start:].decode() if value else None for value in column]


def _penalties(column: tuple[bytes, ...]) -> Iterable[Decimal]:
    """The Penalty of each order, the XSD's default 0 where it is left out."""
    if all(column):
        return _decimals(column)
    if not any(column):
        return repeat(_ZERO, len(column))
    return [Decimal(value.decode()) if value else _ZERO for value in column]


def _isps(texts: tuple[bytes, ...]) -> Sequence[Sequence[FlexOrderSettlementISP]]:
    """Each order's ISPs, held as their text: made into rows at once where a value may be
    too long for `int` (`_LONG_ISPS`)."""
    held = FlexOrderSettlementISPs.each(texts)
    if texts and max(map(len, texts)) > _LONG_ISPS:
        return [
            tuple(rows) if len(text) > _LONG_ISPS else rows
            for rows, text in zip(held, texts, strict=True)
        ]
    return held
