"""Metering profiles and FlexOrderSettlement ISPs, read attribute by attribute, give the very
models that were written, whatever optional attributes the ISPs hold, in whatever order and
lexical form; the rows of each profile and order stay their own."""

from __future__ import annotations

import dataclasses
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
