"""The listings of the flex commands (`agr requests`, `agr offers`, `agr reservations`,
`dso offers`, `dso prognoses`, `dso metering`) read the book as the handlers recorded it; their
text and JSON are pinned here, byte for byte, on one book of each kind of entry, accepted and
rejected (the rejected with reasons the peer's text is quoted in, escaped when shown)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.flex.handlers import entry_of
from adapter.flex.state import Direction, Entry, Standing
from adapter.store import flex_book_for
from adapter.store.sqlite import SqliteStore
from adapter.uftp import codec
from tests.flex.messages import (
    AGR,
    DSO,
    NOW,
    d_prognosis,
    flex_offer,
    flex_request,
    metering,
    reservation_update,
)
from tests.flex.test_cli_flex import folder  # noqa: F401 - the fixture

#: Far ahead, so that what is accepted stays so (a past expiry would read "expired").
LATER = datetime(2099, 12, 7, 14, tzinfo=UTC)
REASONS = ("Unknown congestion point x; y", "ISP conflict\x1b[2J")

#: role -> (direction, messages) recorded in its book
BOOKS = {
    "dso": (
        Direction.RECEIVED,
        [flex_offer(expiration_date_time=LATER), d_prognosis(), metering()],
    ),
    "agr": (Direction.RECEIVED, [flex_request(expiration_date_time=LATER), reservation_update()]),
    "agr-sent": (Direction.SENT, [flex_offer(expiration_date_time=LATER)]),
}
PINNED = Path(__file__).with_name("listings.txt")


def entries(role: str) -> list[Entry]:
    direction, messages = BOOKS[role]
    peer = AGR if role == "dso" else DSO
    found = []
    for message in messages:
        for standing, suffix in ((Standing.ACCEPTED, ""), (Standing.REJECTED, "f")):
            if suffix:
                message_id = message.message_id[:-2] + "f" + message.message_id[-1]
                message = dataclasses.replace(message, message_id=message_id)
            entry = entry_of(
                message,
                direction=direction,
                peer_domain=peer,
                inner_xml=codec.encode(message),
                recorded_at=NOW,
                standing=standing,
            )
            found.append(dataclasses.replace(entry, reasons=REASONS if suffix else ()))
    return found


def record(path: Path, found: list[Entry]) -> None:
    async def write() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            book = flex_book_for(store)
            for entry in found:
                await book.record(entry)
        finally:
            await store.close()

    asyncio.run(write())


LISTINGS = [
    ("agr", "requests"),
    ("agr", "offers"),
    ("agr", "reservations"),
    ("dso", "offers"),
    ("dso", "prognoses"),
    ("dso", "metering"),
]


def listed(folder: Path, capsys: pytest.CaptureFixture[str]) -> str:  # noqa: F811
    shown = []
    for role, command in LISTINGS:
        for fmt in ("text", "json"):
            status = main(
                [role, command, "--config", str(folder / f"{role}.toml"), "--format", fmt]
            )
            out = capsys.readouterr().out
            shown.append(f"== {role} {command} --format {fmt}: {status}\n{out}")
    return "".join(shown)


def test_each_listing_prints_as_pinned(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    empty = listed(folder, capsys)
    record(folder / "var" / "dso.sqlite3", entries("dso"))
    record(folder / "var" / "agr.sqlite3", entries("agr") + entries("agr-sent"))
    full = listed(folder, capsys)
    assert empty + full == PINNED.read_text()
