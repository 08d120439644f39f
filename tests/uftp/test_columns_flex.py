"""Metering profiles and FlexOrderSettlement ISPs, read attribute by attribute, give the very
models that were written, whatever optional attributes the ISPs hold, in whatever order and
lexical form; the rows of each profile and order stay their own."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal

import pytest

from adapter.bulk import LARGE_MESSAGES
from adapter.uftp import codec
from adapter.uftp.errors import InvalidXml
from adapter.uftp.messages import (
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexSettlement,
    Metering,
    MeteringISP,
)

from .samples import make_flex_settlement, make_metering


def metering(isps: int, profiles: int = 3) -> Metering:
    sample = make_metering()
    return dataclasses.replace(
        sample,
        profiles=tuple(
            dataclasses.replace(
                sample.profiles[p % 2],
                isps=tuple(
                    MeteringISP(i + 1, Decimal(f"{i * 7 - 300}.{p}{i % 10}")) for i in range(isps)
                ),
            )
            for p in range(profiles)
        ),
    )


@pytest.mark.parametrize("isps", [63, 64, 96, 2_000])
def test_metering_profiles_read_back_as_written(isps: int) -> None:
    message = metering(isps)
    data = codec.encode(message)
    assert codec.decode(data) == message
    assert codec.decode(data, bulk=LARGE_MESSAGES) == message


def test_attributes_in_either_order_and_other_lexical_forms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = codec.encode(metering(100, profiles=1))
    # The sender may put Value first, and write integers and decimals as the XSD allows.
    for old, new in (
        (b'<ISP Start="7" Value="-258.06"/>', b'<ISP Value=" -258.060" Start=" +007"/>'),
        (b'<ISP Start="9" Value="-244.08"/>', b'<ISP Value="+.5" Start="0009"/>'),
    ):
        assert old in data
        data = data.replace(old, new)
    read = codec.decode(data)
    assert isinstance(read, Metering)
    assert read.profiles[0].isps[6] == MeteringISP(7, Decimal("-258.060"))
    assert read.profiles[0].isps[8] == MeteringISP(9, Decimal(".5"))


def test_isp_numbers_are_shared_between_profiles() -> None:
    read = codec.decode(codec.encode(metering(1_000, profiles=2)))
    assert isinstance(read, Metering)
    first, second = (profile.isps for profile in read.profiles)
    assert all(a.start is b.start for a, b in zip(first, second, strict=True))


def test_a_metering_isp_without_value_is_refused_with_or_without_help() -> None:
    data = codec.encode(metering(100, profiles=1))
    assert b' Value="-209.03"' in data
    data = data.replace(b' Value="-209.03"', b"", 1)
    for bulk in (None, LARGE_MESSAGES):
        with pytest.raises(InvalidXml):
            codec.decode(
                data, bulk=dataclasses.replace(LARGE_MESSAGES, threshold=0) if bulk else None
            )


def settlement(orders: int, duration: int | None, deficiency: int | None) -> FlexSettlement:
    """`orders` orders of 4 ISPs; Duration and PowerDeficiency on every ISP (a value), on
    none (None: the defaults, which the encoder leaves out) or on some (-1)."""

    def isp(n: int, i: int) -> FlexOrderSettlementISP:
        d = duration if duration not in (None, -1) else (2 if duration == -1 and i == 1 else 1)
        p = (
            deficiency
            if deficiency not in (None, -1)
            else (50 if deficiency == -1 and n % 3 == 0 else 0)
        )
        return FlexOrderSettlementISP(10 + 2 * i, 1_000 + n, -200, 900 + i, -100 - n, d, p)

    sample = make_flex_settlement()
    order = sample.flex_order_settlements[0]
    return dataclasses.replace(
        sample,
        flex_order_settlements=tuple(
            dataclasses.replace(order, price=Decimal(n), isps=tuple(isp(n, i) for i in range(4)))
            for n in range(orders)
        )
        + sample.flex_order_settlements,
    )


@pytest.mark.parametrize("orders", [10, 20, 300])
@pytest.mark.parametrize(
    ("duration", "deficiency"), [(None, None), (3, 7), (-1, None), (None, -1), (-1, -1), (4, -1)]
)
def test_order_settlement_isps_read_back_as_written(
    orders: int, duration: int | None, deficiency: int | None
) -> None:
    message = settlement(orders, duration, deficiency)
    data = codec.encode(message)
    assert codec.decode(data) == message
    assert codec.decode(data, bulk=LARGE_MESSAGES) == message


def test_each_order_keeps_its_own_isps() -> None:
    read = codec.decode(codec.encode(settlement(50, -1, -1)))
    assert isinstance(read, FlexSettlement)
    sizes = [len(order.isps) for order in read.flex_order_settlements]
    assert sizes == [4] * 50 + [2, 1]
    assert all(isinstance(o, FlexOrderSettlement) for o in read.flex_order_settlements)
    assert read.flex_order_settlements[7].isps[0].delivered_flex_power == -107


def test_an_order_settlement_isp_without_actual_power_is_refused() -> None:
    data = codec.encode(settlement(30, None, None))
    assert b' ActualPower="901"' in data
    data = data.replace(b' ActualPower="901"', b"", 1)
    with pytest.raises(InvalidXml):
        codec.decode(data)
    with pytest.raises(InvalidXml):
        codec.decode(data, bulk=dataclasses.replace(LARGE_MESSAGES, threshold=0))


# --- Large messages read as a stream --------------------------------------------------------

#: The endpoint's help, lent for every size: each message is read as a large one.
STREAMED = dataclasses.replace(LARGE_MESSAGES, threshold=0)


@pytest.mark.parametrize(
    "message",
    [metering(100), metering(3, profiles=1), settlement(30, -1, -1), settlement(2, None, None)],
    ids=["metering", "small metering", "settlement", "small settlement"],
)
def test_a_large_message_read_as_a_stream_equals_the_tree_reading(message: object) -> None:
    data = codec.encode(message)  # type: ignore[arg-type]
    assert codec.decode(data, bulk=STREAMED) == message == codec.decode(data)


def test_the_stream_keeps_no_child_in_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    roots = []
    stream = codec.stream_children

    def spy(*args: object, **kwargs: object) -> object:
        root, children = stream(*args, **kwargs)  # type: ignore[arg-type]
        roots.append(root)
        return root, children

    monkeypatch.setattr(codec, "stream_children", spy)
    # A comment among the profiles: not read from the bytes (`scan`), but element by element.
    data = codec.encode(metering(100)).replace(b"</Profile>", b"</Profile><!-- x -->", 1)
    read = codec.decode(data, bulk=STREAMED)
    assert isinstance(read, Metering) and len(read.profiles) == 3
    assert [len(root) for root in roots] == [0]


def _refusal(data: bytes, bulk: object) -> str:
    """What the refusal says, but where: a violation found on the parser's events has no
    line, and libxml2 words the position of a syntax error its own way in each reading."""
    with pytest.raises(InvalidXml) as refused:
        codec.decode(data, bulk=bulk)  # type: ignore[arg-type]
    return re.sub(r" \(line \d+\)|, line \d+.*", "", str(refused.value))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b' Value="-209.03"', b""),  # a required attribute missing
        (b' Value="-209.03"', b' Value="many"'),  # not a decimal
        (b' Start="14"', b' Start="14" Extra="1"'),  # an attribute the type has not
        (b'Unit="kW"', b'Unit="MW"'),  # not in the enumeration
        (b"</Profile>", b"</Profile><Profile/>"),  # a profile without ISP
        (b'Period="', b'Period="10000-01-01" Was="'),  # schema-valid year beyond `date`
    ],
)
def test_a_stream_refuses_what_the_tree_reading_refuses_in_the_same_words(
    old: bytes, new: bytes
) -> None:
    data = codec.encode(metering(100, profiles=2))
    assert old in data
    data = data.replace(old, new, 1)
    assert _refusal(data, STREAMED) == _refusal(data, None)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"</Profile>", b"</Profil>"),
        (b'<ISP Start="14"', b'<Profile Unit="kW"><ISP Start="14"'),
        # Errors found only at the end of the document, which lxml's feed parser left out of
        # its log with entity substitution off, and took the document for well-formed.
        (b"</Metering>", b"</Metering"),
        (b"</Profile></Metering>", b"</Profile>"),
        (b"</Metering>", b"</Metering><!--"),
        (b"</Metering>", b"</Metering> <"),
    ],
)
def test_a_malformed_stream_is_refused(old: bytes, new: bytes) -> None:
    data = codec.encode(metering(100, profiles=2))
    assert old in data
    data = data.replace(old, new, 1)
    assert _refusal(data, None).startswith("not well-formed XML")
    # Malformed and, up to there, invalid: the stream may name the violation it met first.
    assert _refusal(data, STREAMED).startswith(("not well-formed XML", "not valid against"))


def test_a_stream_refuses_a_document_type_declaration() -> None:
    data = b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>' + codec.encode(metering(3))[38:]
    assert "document type declarations" in _refusal(data, STREAMED)


def test_a_settlement_with_a_broken_isp_is_refused_by_the_schema_in_a_stream() -> None:
    data = codec.encode(settlement(30, None, None))
    assert b' ActualPower="901"' in data
    data = data.replace(b' ActualPower="901"', b' ActualPower="x"', 1)
    assert _refusal(data, STREAMED) == _refusal(data, None)
    assert "not valid against the UFTP 3.1.0 schema" in _refusal(data, STREAMED)
