"""A large Metering message read from its validated bytes, column-wise (`adapter.uftp.scan`),
gives what the element reading of the tree gives, value for value and exponent for exponent:
for the recorded messages of shapeshifter-uftp, for generated ones in every lexical form the
schema allows, and, through the element reading, for the forms the scan leaves alone."""

from __future__ import annotations

import dataclasses
import pickle
import re
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.bulk import LARGE_MESSAGES
from adapter.uftp import codec
from adapter.uftp.errors import InvalidXml
from adapter.uftp.messages import Metering, MeteringISP, MeteringISPs

from .test_columns_flex import metering

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
