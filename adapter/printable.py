"""Text a peer chose, made safe to print: in a log line, or on an operator's terminal.

A peer writes the SenderDomain of its SignedMessage before anything is verified, and any
character the schema lets through into an EntityAddress (".{1,244}" after its prefix): a line
feed starts a forged log line, U+2028 or U+0085 a new line in viewers that honour them, U+202E
reverses what follows it on a terminal. `printable` writes every character that Python does
not call printable - controls, format characters (the bidi controls among them), line and
paragraph separators, surrogates, unassigned code points, spaces other than " " - as the
escape `repr()` would write, and a backslash as two, so that an escape in the output always
stands for a character that was escaped.
"""

from __future__ import annotations

_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, limit: int | None = None) -> str:
    """`text` with every unprintable character escaped; cut after `limit` characters, saying
    how many were left out."""
    text, more = _cut(text, limit)
    if text.isprintable() and "\\" not in text:
        return text + more
    return "".join(_escape(char) for char in text) + more


def printable_once(text: str, limit: int | None = None) -> str:
    """`text` that may have been made printable where it was kept (the reason of a delivery
    attempt is escaped as it is recorded: `adapter.client`): escaped only if it still holds
    an unprintable character, so that an escape made there is not shown doubled, while what
    an older version stored unescaped is escaped here."""
    if not text.isprintable():
        return printable(text, limit)
    text, more = _cut(text, limit)
    return text + more


def _cut(text: str, limit: int | None) -> tuple[str, str]:
    """`text` cut after `limit` characters, and what says how many were left out."""
    if limit is None or len(text) <= limit:
        return text, ""
    return text[:limit], f"... ({len(text) - limit} more characters)"


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
