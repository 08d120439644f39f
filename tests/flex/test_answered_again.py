"""A flex message handled again (after a restart) is answered as it was the first time: with
the same reasons, one each, however their text reads (adapter.flex.handlers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapter.flex.handlers import _answered_before, _decided
from adapter.roles import Role
from adapter.router import HandlerContext
from adapter.store import flex_book_for
from adapter.store.sqlite import SqliteStore
from adapter.uftp import codec
from adapter.uftp.errors import Rejection
from tests.flex.messages import AGR, NOW, flex_offer


async def test_a_rejection_is_answered_again_with_the_reasons_it_had(tmp_path: Path) -> None:
    # A reason holding "; " (it can quote peer-controlled text) stays one reason.
    reasons = ["Unknown congestion point ean.1; ISP conflict", "Period in the past"]
    offer = flex_offer()
    inner = codec.encode(offer)
    participant: Any = None  # the handlers under test send nothing
    ctx = HandlerContext(
        sender_domain=AGR,
        sender_role=Role.AGR,
        message_id=offer.message_id,
        conversation_id=offer.conversation_id,
        envelope=b"",
        inner_xml=inner,
        received_at=NOW,
        participant=participant,
    )
    store = SqliteStore(tmp_path / "dso.sqlite3")
    await store.open()
    try:
        book = flex_book_for(store)
        with pytest.raises(Rejection) as first:
            await _decided(book, offer, ctx, reasons, NOW)
        with pytest.raises(Rejection) as again:
            await _answered_before(book, offer, ctx)
    finally:
        await store.close()
    assert again.value.reasons == first.value.reasons == tuple(reasons)
