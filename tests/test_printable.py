"""`printable`: text a peer chose, escaped for a log line or a terminal."""

from __future__ import annotations

import pytest

from adapter.printable import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("dso.example.com", "dso.example.com"),
        ("café Zürich ÿ", "café Zürich ÿ"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("left\u202eright", "left\\u202eright"),
        ("a\u2028b\u2029c\x85d", "a\\u2028b\\u2029c\\x85d"),
        ("\u200bzero\ufeffwidth\u2066", "\\u200bzero\\ufeffwidth\\u2066"),
        ("nbsp\xa0", "nbsp\\xa0"),
        ("\x00\x1b[31mred", "\\x00\\x1b[31mred"),
        ("\U000e0001tag \udc80", "\\U000e0001tag \\udc80"),
        ("a\\nb", "a\\\\nb"),  # a backslash the peer wrote is not an escape
    ],
    ids=[
        "plain",
        "accents",
        "controls",
        "bidi-override",
        "separators",
        "format",
        "no-break-space",
        "terminal-escape",
        "tag-and-surrogate",
        "backslash",
    ],
)
def test_unprintable_characters_are_escaped(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_long_text_is_cut_and_says_how_much_is_left_out() -> None:
    assert printable("x" * 1000 + "\n", 10) == "x" * 10 + "... (991 more characters)"
    assert printable("short", 10) == "short"


def test_text_escaped_where_it_was_kept_is_not_escaped_twice() -> None:
    """A delivery attempt's reason is escaped as it is recorded; shown later, its escapes stay
    single, while a reason an older version kept raw is escaped on the way out."""
    from adapter.printable import printable_once

    kept = printable("bad\u202e message")
    assert printable_once(kept) == kept == "bad\\u202e message"
    assert printable_once("bad\u202e message") == "bad\\u202e message"
    assert printable_once("a" * 10, 4) == "aaaa... (6 more characters)"
