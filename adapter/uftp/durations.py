"""xs:duration <-> `timedelta`, for the ISP-Duration of flex and metering messages.

The spec writes an ISP-Duration in minutes ("PT15M", metadata-attributes.md), but the XSD
types it as xs:duration, so any lexical form the schema accepts is read: "PT900S",
"P0DT0H15M", "-PT15M", fractions of a second. A duration of years or months has no fixed
length and so cannot be an ISP length; it is refused here (the codec turns the `ValueError`
into an `InvalidXml`), as is one too long for a `timedelta`.

Written in the shortest form of days, hours, minutes and seconds: 15 minutes is "PT15M".
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

__all__ = ["format_duration", "parse_duration"]

# The schema has validated the text already; this only takes it apart.
_DURATION = re.compile(
    r"(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?|\.\d+)S)?)?"
)


def parse_duration(text: str) -> timedelta:
    """The `timedelta` of an xs:duration; `ValueError` if it has none."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or text.strip() in ("P", "-P") or text.strip().endswith("T"):
        raise ValueError(f"{text!r} is not an xs:duration")
    sign, years, months, days, hours, minutes, seconds = match.groups()
    if int(years or 0) or int(months or 0):
        raise ValueError(f"duration {text!r} counts years or months, which have no fixed length")
    try:
        value = timedelta(
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            # Decimal, not float: "PT0.1S" is exactly 100,000 microseconds.
            microseconds=int(Decimal(seconds or 0) * 1_000_000),
        )
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None
    return -value if sign else value


def format_duration(value: timedelta) -> str:
    """`value` as an xs:duration in its shortest form ("PT15M", "P1DT2H", "PT0S")."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or value.microseconds:
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        time += f"{seconds}{fraction}S"
    day = f"{value.days}D" if value.days else ""
    if not day and not time:
        return "PT0S"
    return f"{sign}P{day}{'T' + time if time else ''}"
