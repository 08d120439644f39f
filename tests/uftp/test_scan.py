"""A large Metering or FlexSettlement message read from its validated bytes
(`adapter.uftp.scan`) gives what the element reading of the tree gives, value for value and
exponent for exponent: for the recorded messages of shapeshifter-uftp, for generated ones in
every lexical form the schema allows, and, through the element reading, for the forms the
scan leaves alone; and it is refused in the same words."""

from __future__ import annotations

import dataclasses
import pickle
import re
from datetime import date
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import Any

import pytest

from adapter.bulk import LARGE_MESSAGES
from adapter.uftp import codec, scan
from adapter.uftp.errors import InvalidXml
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateConnection,
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexOrderSettlementISPs,
    FlexSettlement,
    Metering,
    MeteringISP,
    MeteringISPs,
)

from .samples import make_dso_portfolio_update
from .test_codec_bulk import portfolio
from .test_columns_flex import metering, settlement

#: The endpoint's help, lent for every size: each message is read as a large one.
STREAMED = dataclasses.replace(LARGE_MESSAGES, threshold=0)
FIXTURES = Path(__file__).parents[1] / "interop" / "fixtures"


def exact(message: Metering) -> list[list[tuple[int, tuple[int, tuple[int, ...], int | str]]]]:
    """Each ISP's number and value as a Decimal's sign, digits and exponent: "1.50" and
    "1.5" are equal Decimals, and differ here."""
    return [
        [(isp.start, tuple(isp.value.as_tuple())) for isp in profile.isps]  # type: ignore[misc]
        for profile in message.profiles
    ]


def both(data: bytes) -> tuple[Metering, Metering]:
    """`data` read as a large message and from the tree, after checking they are the same."""
    streamed, tree = codec.decode(data, bulk=STREAMED), codec.decode(data)
    assert isinstance(streamed, Metering) and isinstance(tree, Metering)
    assert streamed == tree
    assert exact(streamed) == exact(tree)
    assert codec.encode(streamed) == codec.encode(tree)
    return streamed, tree


def scanned(message: Metering) -> bool:
    return all(isinstance(profile.isps, MeteringISPs) for profile in message.profiles)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("Metering-*.xml")), ids=lambda p: p.stem)
def test_recorded_metering_read_from_the_bytes_as_from_the_tree(path: Path) -> None:
    streamed, tree = both(path.read_bytes())
    assert scanned(streamed) and not scanned(tree)


@pytest.mark.parametrize("isps", [1, 96, 3_000])
def test_generated_metering_read_from_the_bytes_as_written(isps: int) -> None:
    message = metering(isps)
    streamed, _ = both(codec.encode(message))
    assert scanned(streamed)
    assert streamed == message
    assert isinstance(streamed.profiles[0].isps, MeteringISPs)
    assert streamed.profiles[0].isps.starts == range(1, isps + 1)


#: Forms of an ISP the schema allows and the scan reads: any order of the attributes, ISP
#: numbers that do not count up or are written with signs and zeros, decimals with trailing
#: zeros, signs, no integer or no fraction digits, blanks and line ends around them.
LEXICAL = [
    (b'<ISP Start="2" Value="-293.01"/>', b'<ISP Value="-293.0100" Start="2"/>'),
    (b'<ISP Start="3" Value="-286.02"/>', b'<ISP    Start="+003"   Value="+.5"   />'),
    (b'<ISP Start="4" Value="-279.03"/>', b'<ISP Start="0004" Value="5."/>'),
    (b'<ISP Start="5" Value="-272.04"/>', b'<ISP Start="5" Value="\n -0.000\t"/>'),
    (b'<ISP Start="6" Value="-265.05"/>', b'<ISP Start="60" Value="1.50"/>'),
    (b"</Profile>", b"</Profile >\n\n"),
    (b"<ISP ", b"\n  <ISP "),
]


@pytest.mark.parametrize(("old", "new"), LEXICAL)
def test_every_lexical_form_is_read_from_the_bytes_as_from_the_tree(old: bytes, new: bytes) -> None:
    data = codec.encode(metering(20, profiles=2))
    assert old in data
    streamed, tree = both(data.replace(old, new))
    assert scanned(streamed)


def test_values_keep_their_exponent() -> None:
    data = codec.encode(metering(20, profiles=1))
    data = data.replace(b'Value="-265.05"', b'Value="1.50"').replace(
        b'Value="-258.06"', b'Value="100"'
    )
    streamed, _ = both(data)
    assert str(streamed.profiles[0].isps[5].value) == "1.50"
    assert str(streamed.profiles[0].isps[6].value) == "100"


#: Forms the scan leaves to the element reading: a reference, single quotes, a comment, a
#: processing instruction, a namespace declaration, an attribute on a line of its own or with
#: blanks around its "=".
NOT_PLAIN = [
    (b'Value="-265.05"', b'Value="-265.0&#53;"'),
    (b'Value="-265.05"', b"Value='-265.05'"),
    (b"</Profile>", b"</Profile><!-- a comment -->"),
    (b"</Profile>", b'<!-- <ISP Start="1" Value="7"/> --></Profile>'),
    (b"</Profile>", b"</Profile><?pi data?>"),
    (b"<Profile ", b'<Profile xmlns="" '),
    (b'<ISP Start="6"', b'<ISP\nStart="6"'),
    (b'<ISP Start="6"', b'<ISP Start = "6"'),
    (b' Value="-265.05"', b'\tValue="-265.05"'),
]


@pytest.mark.parametrize(("old", "new"), NOT_PLAIN)
def test_what_is_not_written_plainly_is_read_element_by_element(old: bytes, new: bytes) -> None:
    data = codec.encode(metering(20, profiles=2))
    assert old in data
    streamed, _ = both(data.replace(old, new, 1))
    assert not scanned(streamed)


def _refusal(data: bytes, bulk: object) -> str:
    with pytest.raises(InvalidXml) as refused:
        codec.decode(data, bulk=bulk)  # type: ignore[arg-type]
    return re.sub(r" \(line \d+\)|, line \d+.*", "", str(refused.value))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b' Start="14"', b' Start="1' + b"0" * 5_000 + b'"'),  # beyond what `int` reads
        (b' Start="14"', b' Start="x"'),
        (b' Value="-209.03"', b' Value="1e3"'),
        (b"</Profile>", b"<ISP Start='1'/></Profile>"),
        (b"</Metering>", b"</Metering><Metering/>"),
    ],
)
def test_what_the_tree_reading_refuses_is_refused_in_the_same_words(old: bytes, new: bytes) -> None:
    data = codec.encode(metering(100, profiles=2))
    assert old in data
    data = data.replace(old, new, 1)
    assert _refusal(data, STREAMED) == _refusal(data, None)


def test_column_wise_isps_are_an_immutable_sequence_equal_to_their_tuple() -> None:
    isps = MeteringISPs(range(1, 4), (b"1.50", b"-2", b" .5"))
    rows = (
        MeteringISP(1, Decimal("1.50")),
        MeteringISP(2, Decimal(-2)),
        MeteringISP(3, Decimal("0.5")),
    )
    assert isps == rows and rows == isps and list(isps) == list(rows)
    assert hash(isps) == hash(rows)
    assert isps[1] == rows[1] and isps[-1] == rows[-1] and isps[1:] == rows[1:]
    assert len(isps) == 3 and MeteringISP(3, Decimal("0.5")) in isps
    assert isps != rows[:2] and isps != (*rows[:2], MeteringISP(3, Decimal(1)))
    assert isps == MeteringISPs((1, 2, 3), (b"1.5", b"-2.0", b"0.5"))
    assert isps != MeteringISPs((1, 2, 4), (b"1.50", b"-2", b" .5"))
    assert pickle.loads(pickle.dumps(isps)) == isps
    with pytest.raises(AttributeError):
        isps._values = ()  # type: ignore[misc]
    with pytest.raises(ValueError, match="3 ISP numbers for 2 values"):
        MeteringISPs(range(1, 4), (b"1", b"2"))


# --- FlexSettlement -------------------------------------------------------------------------


def plain_settlement(orders: int, duration: int | None, deficiency: int | None) -> FlexSettlement:
    """`test_columns_flex.settlement` with OrderReferences that need no escaping."""
    message = settlement(orders, duration, deficiency)
    return dataclasses.replace(
        message,
        flex_order_settlements=tuple(
            dataclasses.replace(order, order_reference=f"order-{n}")
            for n, order in enumerate(message.flex_order_settlements)
        ),
    )


def exact_orders(message: FlexSettlement) -> list[tuple[object, ...]]:
    """Each order's fields, its Decimals as sign, digits and exponent."""
    return [
        (
            *(getattr(order, f.name) for f in dataclasses.fields(order) if f.name != "isps"),
            *(tuple(d.as_tuple()) for d in (order.price, order.penalty, order.net_settlement)),
            tuple(order.isps),
        )
        for order in message.flex_order_settlements
    ]


def both_settlements(data: bytes) -> tuple[FlexSettlement, FlexSettlement]:
    streamed, tree = codec.decode(data, bulk=STREAMED), codec.decode(data)
    assert isinstance(streamed, FlexSettlement) and isinstance(tree, FlexSettlement)
    assert streamed == tree and tree == streamed
    assert exact_orders(streamed) == exact_orders(tree)
    assert streamed.contract_settlements == tree.contract_settlements
    assert codec.encode(streamed) == codec.encode(tree)
    return streamed, tree


def orders_scanned(message: FlexSettlement) -> bool:
    return all(isinstance(o.isps, FlexOrderSettlementISPs) for o in message.flex_order_settlements)


@pytest.mark.parametrize(
    "path", sorted(FIXTURES.glob("FlexSettlement-*.xml")), ids=lambda p: p.stem
)
def test_recorded_settlement_read_from_the_bytes_as_from_the_tree(path: Path) -> None:
    streamed, tree = both_settlements(path.read_bytes())
    assert orders_scanned(streamed) and not orders_scanned(tree)


@pytest.mark.parametrize(
    ("duration", "deficiency"), [(None, None), (3, 7), (-1, None), (None, -1), (-1, -1)]
)
def test_generated_settlement_read_from_the_bytes_as_written(
    duration: int | None, deficiency: int | None
) -> None:
    message = plain_settlement(40, duration, deficiency)
    streamed, _ = both_settlements(codec.encode(message))
    assert orders_scanned(streamed)
    assert streamed == message


#: Forms of an order the schema allows and the scan reads: attributes in any order and on
#: lines of their own (a line end or tab in a text value is read as a space, as a parser
#: does), decimals with trailing zeros, blanks around numbers, ISPs with an end tag or
#: indented, a ">" in a text value.
SETTLEMENT_LEXICAL = [
    (
        b'<FlexOrderSettlement OrderReference="order-3"',
        b'<FlexOrderSettlement\n\tOrderReference = "order-3"',
    ),
    (b'OrderReference="order-4"', b'OrderReference="order\r\n4\tx\ry"'),
    (b'OrderReference="order-7"', b'OrderReference=""'),
    (b'ContractID="contract-2024-001"', b'ContractID=""'),
    (b'Price="4" ', b'Price=" 4.000 " '),
    (b'OrderReference="order-5"', b'OrderReference="a>b"'),
    (b'<ISP Start="10" Duration="3"', b'\n  <ISP   Duration="3"  Start="10"'),
    (b'PowerDeficiency="7"/>', b'PowerDeficiency=" 07"></ISP >'),
]


@pytest.mark.parametrize(("old", "new"), SETTLEMENT_LEXICAL)
def test_every_lexical_form_of_an_order_is_read_from_the_bytes_as_from_the_tree(
    old: bytes, new: bytes
) -> None:
    data = codec.encode(plain_settlement(10, 3, 7))
    assert old in data
    streamed, _ = both_settlements(data.replace(old, new, 1))
    assert orders_scanned(streamed)


#: Forms the scan leaves to the element reading: a reference, single quotes, a comment (which
#: might hold what looks like an ISP), a processing instruction, a "!" or "?" in a value.
SETTLEMENT_NOT_PLAIN = [
    (b'OrderReference="order-4"', b'OrderReference="order&amp;4"'),
    (b'OrderReference="order-4"', b"OrderReference='order-4'"),
    (b"</FlexOrderSettlement>", b'<!-- <ISP Start="1"/> --></FlexOrderSettlement>'),
    (b"</FlexOrderSettlement>", b"</FlexOrderSettlement><?pi data?>"),
    (b'OrderReference="order-4"', b'OrderReference="order-4!"'),
]


def test_orders_without_optional_attributes_read_from_the_bytes_as_written() -> None:
    message = plain_settlement(20, None, None)
    message = dataclasses.replace(
        message,
        flex_order_settlements=tuple(
            FlexOrderSettlement(
                period=order.period,
                congestion_point=order.congestion_point,
                price=order.price,
                net_settlement=order.net_settlement,
                isps=order.isps,
            )
            for order in message.flex_order_settlements
        ),
    )
    streamed, _ = both_settlements(codec.encode(message))
    assert orders_scanned(streamed) and streamed == message


@pytest.mark.parametrize(("old", "new"), SETTLEMENT_NOT_PLAIN)
def test_an_order_not_written_plainly_is_read_element_by_element(old: bytes, new: bytes) -> None:
    data = codec.encode(plain_settlement(10, 3, 7))
    assert old in data
    streamed, _ = both_settlements(data.replace(old, new, 1))
    assert not orders_scanned(streamed)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'Period="2024-05-02"', b'Period="10000-05-02"'),  # beyond what `date` holds
        (b' ActualPower="901"', b' ActualPower="9' + b"0" * 5_000 + b'"'),  # beyond `int`
        (b' ActualPower="901"', b' ActualPower="9.5"'),
        (b' Price="4"', b' Price="4e3"'),
        (b"<ContractSettlement", b"<FlexOrderSettlement/><ContractSettlement"),
    ],
)
def test_a_settlement_the_tree_reading_refuses_is_refused_in_the_same_words(
    old: bytes, new: bytes
) -> None:
    data = codec.encode(plain_settlement(10, None, None))
    assert old in data
    data = data.replace(old, new, 1)
    assert _refusal(data, STREAMED) == _refusal(data, None)


def test_order_isps_as_text_are_an_immutable_sequence_equal_to_their_rows() -> None:
    isps = FlexOrderSettlementISPs(
        b'<ISP Start="3" BaselinePower="10" OrderedFlexPower="-2" ActualPower="8"'
        b' DeliveredFlexPower="-2"/>\n<ISP DeliveredFlexPower=" -1" Duration="2"'
        b' ActualPower="9" OrderedFlexPower="-2" BaselinePower="10" Start="4"'
        b' PowerDeficiency="1"></ISP>'
    )
    rows = (
        FlexOrderSettlementISP(3, 10, -2, 8, -2),
        FlexOrderSettlementISP(4, 10, -2, 9, -1, 2, 1),
    )
    assert isps == rows and rows == isps and tuple(isps) == rows
    assert hash(isps) == hash(rows) and len(isps) == 2
    assert isps[1] == rows[1] and isps[-1] == rows[-1] and isps[:1] == rows[:1]
    assert isps != rows[:1] and isps != (rows[0], rows[0])
    assert pickle.loads(pickle.dumps(isps)) == isps
    order = FlexOrderSettlement(
        period=date(2024, 5, 1),
        congestion_point="ean.871685900000000000",
        price=Decimal(1),
        net_settlement=Decimal(1),
        isps=isps,
    )
    assert order == dataclasses.replace(order, isps=rows)
    with pytest.raises(AttributeError):
        isps._text = b""  # type: ignore[misc]


def test_an_order_made_without_its_init_is_the_order_its_init_makes() -> None:
    streamed, tree = both_settlements(codec.encode(plain_settlement(3, 3, 7)))
    for made, built in zip(
        streamed.flex_order_settlements, tree.flex_order_settlements, strict=True
    ):
        rebuilt = FlexOrderSettlement(
            **{f.name: getattr(made, f.name) for f in dataclasses.fields(made)}
        )
        assert made == rebuilt == built and hash(made) == hash(rebuilt)
        assert repr(made) == repr(rebuilt)
        assert pickle.loads(pickle.dumps(made)) == built
        assert dataclasses.replace(made, price=Decimal(1)).price == Decimal(1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.price = Decimal(1)  # type: ignore[misc]


def test_only_a_class_whose_init_sets_its_fields_is_made_without_it() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="needs its __init__"):
        scan._maker(Checked)


@pytest.mark.parametrize("penalised", ["every", "some", "none"])
@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "attributes-moved"])
def test_penalties_read_whether_every_some_or_no_order_has_one(
    penalised: str, in_order: bool
) -> None:
    """A Penalty is read where written, the XSD's default 0 where not, whichever orders have
    one: the column is read in one of three ways."""
    message = plain_settlement(12, None, None)
    orders = message.flex_order_settlements
    message = dataclasses.replace(
        message,
        flex_order_settlements=tuple(
            dataclasses.replace(
                order,
                penalty=Decimal(f"{n}.{n:02d}0")
                if penalised == "every" or (penalised == "some" and n % 3 == 1)
                else Decimal(0),
            )
            for n, order in enumerate(orders)
        ),
    )
    data = codec.encode(message)
    if not in_order:  # the general expression reads them
        data = data.replace(
            b'<FlexOrderSettlement OrderReference="order-2"',
            b'<FlexOrderSettlement\n OrderReference="order-2"',
            1,
        )
    streamed, _ = both_settlements(data)
    assert orders_scanned(streamed) and streamed == message


@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "attributes-moved"])
def test_an_order_whose_isps_are_long_holds_rows_the_others_their_text(in_order: bool) -> None:
    """ISPs of more than `scan._LONG_ISPS` bytes are made into rows as the message is read;
    every other order keeps its text."""
    message = plain_settlement(6, None, None)
    orders = list(message.flex_order_settlements)
    orders[3] = dataclasses.replace(
        orders[3],
        isps=tuple(FlexOrderSettlementISP(1 + i, 10**9 + i, -1, 7, -1) for i in range(60)),
    )
    message = dataclasses.replace(message, flex_order_settlements=tuple(orders))
    data = codec.encode(message)
    if not in_order:
        data = data.replace(
            b'<FlexOrderSettlement OrderReference="order-1"',
            b'<FlexOrderSettlement\n OrderReference="order-1"',
            1,
        )
    streamed, _ = both_settlements(data)
    assert streamed == message
    kinds = [type(order.isps) for order in streamed.flex_order_settlements]
    assert kinds[3] is tuple
    assert kinds[:3] + kinds[4:-2] == [FlexOrderSettlementISPs] * (len(kinds) - 3)


def test_instances_are_made_only_from_a_full_column_for_each_field() -> None:
    """No instance is left with a field unset: a column short of values, or one missing,
    is refused before any is made."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Pair:
        left: int
        right: str | None = None

    make = scan._maker(Pair)
    assert make(2, [[1, 2], ["a", "b"]]) == [Pair(1, "a"), Pair(2, "b")]
    assert make(3, [(1, 2, 3), repeat(None, 3)]) == [Pair(1), Pair(2), Pair(3)]
    assert make(0, [[], []]) == []
    for columns in ([[1, 2], ["a"]], [[1, 2]], [[1, 2], repeat(None)], [[1, 2], ["a", "b"], []]):
        with pytest.raises(ValueError, match="a column for each field"):
            make(2, columns)


def test_of_several_periods_python_does_not_hold_the_first_is_named() -> None:
    """Repeating values are read once each; a refusal still names the first bad one in the
    document, as the element reading does."""
    data = codec.encode(plain_settlement(10, None, None))
    for n in range(1, 9):
        data, replaced = re.subn(
            rb'(OrderReference="order-%d" Period=")[^"]*' % n, rb"\g<1>1%04d-05-02" % (9 - n), data
        )
        assert replaced == 1
    refusal = _refusal(data, STREAMED)
    assert refusal == _refusal(data, None) and "10008-05-0" in refusal


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'OrderReference="order-1"', b'OrderReference="order\r\n1\tx\ry"'),
        (b'ContractID="contract-2024-001"', b'ContractID="contract\t2024\n001"'),
        (b"cp-utrecht-01", b"cp\tutrecht\r\n01"),
        (b' CongestionPoint="', b' BaselineReference="base\nline" CongestionPoint="'),
    ],
)
def test_a_tab_or_line_end_in_a_text_value_is_read_as_a_space_in_order(
    old: bytes, new: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attributes in the XSD's order are read by the one expression whatever their text
    values hold, normalised as a parser does (the general expression is switched off)."""
    data = codec.encode(plain_settlement(4, None, None))
    assert old in data
    monkeypatch.setattr(scan, "_ORDER", re.compile(rb"(?!)"))
    streamed, _ = both_settlements(data.replace(old, new, 1))
    assert orders_scanned(streamed)


# --- DSOPortfolioUpdate ---------------------------------------------------------------------


def plain_sample(version: str) -> DSOPortfolioUpdate:
    """`samples.make_dso_portfolio_update` (every optional attribute present on one point,
    absent on the other) with an EntityAddress that needs no escaping."""
    message = make_dso_portfolio_update(version=version)
    first, *rest = message.congestion_points
    first = dataclasses.replace(first, entity_address="ea1.2013-11.info.usef.test:001:002.a#")
    return dataclasses.replace(message, congestion_points=(first, *rest))


def both_portfolios(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> tuple[DSOPortfolioUpdate, bool]:
    """`data` read as a large message, after checking it equals the tree's reading; and
    whether it was read from the bytes (no stream of its congestion points)."""
    streams: list[bool] = []
    stream = codec.stream_children

    def counted(*args: Any, **kwargs: Any) -> Any:
        streams.append(True)
        return stream(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(codec, "stream_children", counted)
        streamed = codec.decode(data, bulk=STREAMED)
    tree = codec.decode(data)
    assert isinstance(streamed, DSOPortfolioUpdate) and isinstance(tree, DSOPortfolioUpdate)
    assert streamed == tree
    assert all(
        type(row) is DSOPortfolioUpdateConnection
        for point in streamed.congestion_points
        for row in point.connections
    )
    assert codec.encode(streamed) == codec.encode(tree)
    return streamed, not streams


@pytest.mark.parametrize(
    "message",
    [
        portfolio(3, 1000),
        portfolio(3, 1000, end_every=1),
        portfolio(4, 300, end_every=7),
        plain_sample("3.1.0"),
        plain_sample("3.0.0"),
        plain_sample("4.0.0"),
    ],
    ids=["plain", "all end", "some end", "sample", "3.0.0", "draft"],
)
def test_a_portfolio_is_read_from_the_bytes_as_written(
    message: DSOPortfolioUpdate, monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed, scanned = both_portfolios(codec.encode(message), monkeypatch)
    assert scanned and streamed == message


#: Forms of a congestion point and its connections the schema allows and the scan reads:
#: attributes in any order and on lines of their own, blanks around "=", a line end or tab
#: in an EntityAddress (read as a space, as a parser does), a ">" or non-ASCII in one, an
#: end tag, time zones on dates (libxml2 refuses blanks around them), a StartPeriod of its
#: own on one connection, an EndPeriod on one only, equal to its StartPeriod.
PORTFOLIO_LEXICAL = [
    (
        b'<Connection EntityAddress="ean.871685900000000005" StartPeriod="2025-01-01"',
        b'<Connection StartPeriod="2025-01-01" EntityAddress="ean.871685900000000005"',
    ),
    (
        b'<Connection EntityAddress="ean.871685900000000005" StartPeriod="2025-01-01"',
        b'<Connection\n\tEntityAddress = "ean.871685900000000005"\r\n StartPeriod="2025-01-01"',
    ),
    (
        b'EntityAddress="ea1.2025-01.nl.example:cp-1"',
        b'EntityAddress="ea1.2025-01.nl.example:cp\t1\r\nx\ry"',
    ),
    (b'EntityAddress="ea1.2025-01.nl.example:cp-1"', b'EntityAddress="ea1.2025-01.nl:c>p\xc3\xa9"'),
    (b'EntityAddress="ean.871685900001000003"', b'EntityAddress="ea1.2025-01.nl:c\tx\r\ny"'),
    (
        b'"ean.871685900000000007" StartPeriod="2025-01-01"',
        b'"ean.871685900000000007" StartPeriod="2025-01-01" EndPeriod="2025-01-01"',
    ),
    (
        b'"ean.871685900000000007" StartPeriod="2025-01-01"',
        b'"ean.871685900000000007" EndPeriod="2025-03-01Z" StartPeriod="2025-02-01+01:00"',
    ),
    (
        b'"ean.871685900001000009" StartPeriod="2025-01-01"',
        b'"ean.871685900001000009" StartPeriod="2024-12-31"',
    ),
    (
        b'"ean.871685900001000009" StartPeriod="2025-01-01"/>',
        b'"ean.871685900001000009" StartPeriod="2025-01-01" ></Connection >\n',
    ),
    (
        b'<CongestionPoint EntityAddress="ea1.2025-01.nl.example:cp-2" StartPeriod="2025-01-01"',
        b'<CongestionPoint\n  StartPeriod="2025-01-01"\n'
        b'  EntityAddress="ea1.2025-01.nl.example:cp-2"',
    ),
    (b"</CongestionPoint>", b"\n</CongestionPoint\n>\n"),
]


@pytest.mark.parametrize(("old", "new"), PORTFOLIO_LEXICAL)
def test_every_lexical_form_of_a_portfolio_is_read_from_the_bytes_as_from_the_tree(
    old: bytes, new: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = codec.encode(portfolio(3, 100))
    assert old in data
    _, scanned = both_portfolios(data.replace(old, new, 1), monkeypatch)
    assert scanned


@pytest.mark.parametrize("end_every", [0, 7])
def test_connections_written_another_way_are_read_from_the_bytes_as_from_the_tree(
    end_every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection with its attributes in another order, EndPeriods on some."""
    data = re.sub(
        rb'<Connection EntityAddress="([^"]*)" StartPeriod="([^"]*)"',
        rb'<Connection  StartPeriod="\2"\n EntityAddress="\1"',
        codec.encode(portfolio(3, 100, end_every=end_every)),
    )
    streamed, scanned = both_portfolios(data, monkeypatch)
    assert scanned and streamed == portfolio(3, 100, end_every=end_every)


#: Forms the scan leaves to the stream: a reference (an escaped EntityAddress), single quotes,
#: a comment (which might hold what looks like a connection), a processing instruction, a
#: "!" or "?" in a value.
PORTFOLIO_NOT_PLAIN = [
    (b':cp-1"', b':cp&amp;&lt;&quot;1"'),
    (b'EntityAddress="ean.871685900000000005"', b"EntityAddress='ean.871685900000000005'"),
    (
        b"</CongestionPoint>",
        b'<!-- <Connection EntityAddress="ean.871685900000000005"/> --></CongestionPoint>',
    ),
    (b"</CongestionPoint>", b"</CongestionPoint><?pi data?>"),
    (b':cp-1"', b':cp!1?"'),
]


@pytest.mark.parametrize(("old", "new"), PORTFOLIO_NOT_PLAIN)
def test_a_portfolio_not_written_plainly_is_read_from_the_stream(
    old: bytes, new: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = codec.encode(portfolio(3, 100, end_every=7))
    assert old in data
    _, scanned = both_portfolios(data.replace(old, new, 1), monkeypatch)
    assert not scanned


FIRST = b'"ean.871685900000000000" StartPeriod="2025-01-01"'
SECOND = b'"ean.871685900000000001" StartPeriod="2025-01-01"'
LAST = b'"ean.871685900002000099" StartPeriod="2025-01-01"'


@pytest.mark.parametrize(
    "changes",
    [
        [(FIRST, b'"ean.871685900000000000" StartPeriod="10000-01-01"')],
        [(LAST, b'"ean.871685900002000099" StartPeriod="10000-01-01"')],
        [(LAST, LAST + b' EndPeriod="10000-01-01"')],
        # Two values beyond `date`: the tree names the first in the document.
        [
            (FIRST, FIRST + b' EndPeriod="10001-01-01"'),
            (SECOND, b'"ean.871685900000000001" StartPeriod="10002-01-01"'),
        ],
        [
            (SECOND, SECOND + b' EndPeriod="10001-01-01"'),
            (FIRST, b'"ean.871685900000000000" StartPeriod="10002-01-01"'),
        ],
        [(b':cp-1" StartPeriod="2025-01-01"', b':cp-1" StartPeriod="10000-01-01"')],
        [(b'EntityAddress="ean.871685900001000050"', b'EntityAddress="ean.1"')],
        [(SECOND, SECOND + b' Extra="1"')],
        [(b"</CongestionPoint>", b"</CongestionPoint><CongestionPoint/>")],
    ],
    ids=["first", "last", "end", "two", "two reversed", "point", "pattern", "extra", "empty"],
)
def test_a_portfolio_the_tree_reading_refuses_is_refused_in_the_same_words(
    changes: list[tuple[bytes, bytes]],
) -> None:
    data = codec.encode(portfolio(3, 100))
    for old, new in changes:
        assert old in data
        data = data.replace(old, new, 1)
    assert b"&" not in data and _refusal(data, STREAMED) == _refusal(data, None)


def test_a_portfolio_is_read_a_congestion_point_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the scan decodes and holds at once is one congestion point's text."""
    message = portfolio(30, 1000)
    data = codec.encode(message)
    read = scan._connections
    sizes: list[int] = []

    def spy(text: str, *args: Any) -> Any:
        sizes.append(len(text))
        return read(text, *args)

    monkeypatch.setattr(scan, "_connections", spy)
    streamed, scanned = both_portfolios(data, monkeypatch)
    assert scanned and streamed == message
    assert len(sizes) == 30 and max(sizes) < len(data) / 29
