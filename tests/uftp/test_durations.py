"""xs:duration <-> timedelta: the ISP-Duration of flex and metering messages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapter.uftp.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT15M", timedelta(minutes=15)),
        ("PT900S", timedelta(minutes=15)),
        ("P0Y0M0DT0H15M0S", timedelta(minutes=15)),
        ("PT1H", timedelta(hours=1)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("-PT15M", -timedelta(minutes=15)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT.25S", timedelta(milliseconds=250)),
        ("PT15.S", timedelta(seconds=15)),
        ("PT0.1S", timedelta(microseconds=100_000)),  # exact, not a float's 0.1
        (" PT15M ", timedelta(minutes=15)),
        ("P0D", timedelta(0)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "P1M",  # a month has no fixed length
        "P1Y",
        "-P2Y",
        "P" + "9" * 12 + "D",  # beyond timedelta
        "PT" + "9" * 20 + "H",
        "15M",
        "P",
        "PT",
        "",
    ],
)
def test_parse_refuses_what_has_no_timedelta(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=15), "PT15M"),
        (timedelta(minutes=30), "PT30M"),
        (timedelta(hours=1), "PT1H"),
        (timedelta(hours=1, minutes=30), "PT1H30M"),
        (timedelta(days=1), "P1D"),
        (timedelta(days=1, seconds=1), "P1DT1S"),
        (timedelta(seconds=1, microseconds=500_000), "PT1.5S"),
        (timedelta(microseconds=1), "PT0.000001S"),
        (-timedelta(minutes=15), "-PT15M"),
        (timedelta(0), "PT0S"),
    ],
)
def test_format_is_the_shortest_form_and_reads_back(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value
