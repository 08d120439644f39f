"""Messages for tests, as an application composes them: business content, metadata left for
the participant to fill when it sends (Version, domains, TimeStamp, identifiers)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import TypeVar

from adapter.router import HandlerContext, Router
from adapter.uftp.messages import (
    RESPONSE_TYPES,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    PayloadMessage,
    PayloadResponse,
    RedispatchBy,
)

__all__ = ["accepting", "composed", "portfolio_update"]

M = TypeVar("M", bound=PayloadMessage)


def composed(message: M) -> M:
    """`message` with its metadata cleared, as an application composes it: what `send` and
    `request` take, and fill."""
    return dataclasses.replace(
        message,
        version="",
        sender_domain="",
        recipient_domain="",
        time_stamp=None,
        message_id="",
        conversation_id="",
    )


def portfolio_update(
    points: int = 1,
    connections: int = 2,
    *,
    start: date = date(2025, 1, 1),
    end_every: int = 0,
    time_zone: str = "Europe/Amsterdam",
) -> DSOPortfolioUpdate:
    """A composed DSOPortfolioUpdate of `points` congestion points of `connections` EAN
    connections each, from `start`, open-ended; with `end_every`, the points end with the
    year, and so do their connections but every `end_every`-th, which ends on 30 June.
    Valid against the schema and the CRO's period rules (a connection ends where its point
    does, at the latest); addresses differ between points, so that a point never conflicts
    with another of the same update."""
    year_end, mid_year = date(start.year, 12, 31), date(start.year, 6, 30)
    cps = []
    for i in range(points):
        rows = tuple(
            DSOPortfolioUpdateConnection(
                f"ean.8716859{i:05d}{j:06d}",
                start,
                (mid_year if j % end_every == 0 else year_end) if end_every else None,
            )
            for j in range(connections)
        )
        cps.append(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=f"ea1.{start:%Y-%m}.nl.example:cp-{i}",
                start_period=start,
                end_period=year_end if end_every else None,
                mutex_offers_supported=bool(i % 2),
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.AGR if i % 3 else None,
                connections=rows,
            )
        )
    return DSOPortfolioUpdate(time_zone=time_zone, congestion_points=tuple(cps))


def accepting(
    *request_types: type[PayloadMessage], seen: list[PayloadMessage] | None = None
) -> Router:
    """A router that answers each of `request_types` Accepted, appending what it handles to
    `seen` (a handler that returns nothing to a request has it answered Accepted, with the
    business fields the response copies from it)."""
    router = Router()

    async def accept(message: PayloadMessage, ctx: HandlerContext) -> PayloadResponse | None:
        if seen is not None:
            seen.append(message)
        return None

    for kind in request_types:
        if kind not in RESPONSE_TYPES:
            raise ValueError(f"{kind.__name__} is not a request: it takes no answer")
        router.on(kind)(accept)
    return router
