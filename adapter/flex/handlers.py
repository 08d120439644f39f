"""The DSO's and the AGR's ready-made flex handlers: the checks of `adapter.flex.rules` on the
state of `adapter.store.flex`, and the state moved by what is accepted.

    book = flex_book_for(participant.store)
    participant.router.include(dso_flex_router(book, market))   # or agr_flex_router

The DSO takes FlexOffers (checked against the FlexRequest they name; kept for the operator,
who orders one with `dso order`) and FlexOfferRevocations, and notes the AGR's answers to its
requests and orders. The AGR takes FlexRequests (kept for the operator, who answers with
`agr offer`) and FlexOrders (checked against the offer they name, which they then order),
and notes the DSO's answers to its offers and revocations.

Each decision is recorded with the message, so a message handled again after a restart gets
the answer it got the first time, even if the time or the state moved meanwhile. Logs name
types and peers; MessageIDs only at debug level.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from adapter.flex.rules import (
    ALREADY_ORDERED,
    Market,
    check_d_prognosis,
    check_flex_offer,
    check_flex_order,
    check_flex_request,
    check_flex_reservation_update,
    check_flex_settlement,
    check_metering,
    check_revocation,
    order_statuses,
)
from adapter.flex.state import Direction, Entry, Standing
from adapter.router import HandlerContext, Router
from adapter.store.base import Store
from adapter.store.flex import FlexBook
from adapter.uftp import codec, envelope
from adapter.uftp.errors import InvalidXml, Rejection
from adapter.uftp.messages import (
    DPrognosis,
    DPrognosisResponse,
    FlexMessage,
    FlexOffer,
    FlexOfferResponse,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestResponse,
    FlexReservationUpdate,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Metering,
    MeteringResponse,
    PayloadMessage,
    PayloadResponse,
    Result,
)

__all__ = ["agr_flex_router", "dso_flex_router", "entry_of", "model_of", "sent_entry"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
M = TypeVar("M", bound=PayloadMessage)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def entry_of(
    message: PayloadMessage,
    *,
    direction: Direction,
    peer_domain: str,
    inner_xml: bytes,
    recorded_at: datetime,
    standing: Standing = Standing.OPEN,
    reasons: Sequence[str] = (),
) -> Entry:
    """The state entry of a flex message as sent or received."""
    period = congestion_point = reference = expires = revision = None
    if isinstance(message, FlexMessage):
        period, congestion_point = message.period, message.congestion_point
    if isinstance(message, FlexRequest):
        expires, revision = message.expiration_date_time, message.revision
    elif isinstance(message, FlexOffer):
        expires, reference = message.expiration_date_time, message.flex_request_message_id
    elif isinstance(message, FlexOrder | FlexOfferRevocation):
        reference = message.flex_offer_message_id
    elif isinstance(message, DPrognosis):
        revision = message.revision
    elif isinstance(message, Metering):
        # No congestion point: the connection (EAN) is read from the message when listed.
        period, revision = message.period, message.revision
    return Entry(
        direction=direction,
        peer_domain=peer_domain,
        message_type=message.xml_name,
        message_id=message.message_id,
        conversation_id=message.conversation_id,
        period=period,
        congestion_point=congestion_point,
        expires_at=expires,
        reference=reference,
        revision=revision,
        standing=standing,
        settled_by=None,
        reasons=tuple(reasons),
        recorded_at=recorded_at,
        inner_xml=inner_xml,
    )


def model_of(entry: Entry | None, kind: type[M]) -> M | None:
    """The message an entry recorded, if it is one of `kind`."""
    if entry is None:
        return None
    message = codec.decode(entry.inner_xml)
    return message if isinstance(message, kind) else None


async def _decided(
    book: FlexBook,
    message: PayloadMessage,
    ctx: HandlerContext,
    reasons: list[str],
    now: datetime,
) -> None:
    """Record the decision on a received message; raise the Rejection it earned."""
    standing = Standing.REJECTED if reasons else Standing.ACCEPTED
    await book.record(
        entry_of(
            message,
            direction=Direction.RECEIVED,
            peer_domain=ctx.sender_domain,
            inner_xml=ctx.inner_xml,
            recorded_at=now,
            standing=standing,
            reasons=reasons,
        )
    )
    _log_decision(message, ctx, reasons)
    if reasons:
        raise Rejection(*reasons)


def _log_decision(message: PayloadMessage, ctx: HandlerContext, reasons: list[str]) -> None:
    log.info(
        "%s %s from %s%s",
        "rejected" if reasons else "accepted",
        message.xml_name,
        ctx.sender_domain,
        f" ({len(reasons)} reasons)" if reasons else "",
    )
    log.debug("%s %s: %s", message.xml_name, message.message_id, "; ".join(reasons) or "ok")


async def _answered_before(book: FlexBook, message: PayloadMessage, ctx: HandlerContext) -> bool:
    """Whether this message was decided on before (handled again after a restart): then its
    answer is the one recorded, raised as a Rejection if it was one."""
    known = await book.get(Direction.RECEIVED, message.message_id, peer_domain=ctx.sender_domain)
    if known is None:
        return False
    if known.standing is Standing.REJECTED:
        raise Rejection(*known.reasons)
    return True


#: The messages whose state the checks read, when we sent them.
_TRACKED = frozenset(
    kind.xml_name
    for kind in (
        FlexRequest,
        FlexOffer,
        FlexOfferRevocation,
        FlexOrder,
        FlexReservationUpdate,
        DPrognosis,
        Metering,
    )
)


async def sent_entry(
    book: FlexBook, outbox: Store | None, message_id: str, peer_domain: str
) -> Entry | None:
    """The entry of a flex message we sent `peer_domain`; one sent without being recorded
    (by `Participant.request` in user code, or a bus command) is recorded now from the
    outbox, as it was signed, so that what refers to it is checked all the same."""
    entry = await book.get(Direction.SENT, message_id, peer_domain=peer_domain)
    if entry is not None or outbox is None:
        return entry
    record = await outbox.get_outbound(message_id)
    if record is None or record.recipient_domain != peer_domain:
        return None
    if record.message_type not in _TRACKED:
        return None
    try:
        inner = envelope.parse_envelope(record.envelope).sealed[envelope.SIGNATURE_BYTES :]
        message = codec.decode(inner)
    except (InvalidXml, ValueError):  # its envelope gone with retention: not ours to judge
        return None
    return await book.record(
        entry_of(
            message,
            direction=Direction.SENT,
            peer_domain=peer_domain,
            inner_xml=inner,
            recorded_at=record.created_at,
        )
    )


async def _note_answer(
    book: FlexBook,
    outbox: Store | None,
    response: PayloadResponse,
    ctx: HandlerContext,
    *,
    accepted_to: Standing,
) -> Entry | None:
    """A response to a message we sent: move that message's entry from OPEN to what the
    response says; the entry, or None for a message we did not send."""
    reference = response.reference_message_id
    accepted = response.result is Result.ACCEPTED
    if await sent_entry(book, outbox, reference, ctx.sender_domain) is None:
        return None
    await book.settle(
        Direction.SENT,
        ctx.sender_domain,
        reference,
        from_=(Standing.OPEN,),
        to=accepted_to if accepted else Standing.REJECTED,
        by=response.message_id,
        # The peer's RejectionReason kept whole, as it wrote it (the listings show it).
        reasons=() if accepted or not response.rejection_reason else (response.rejection_reason,),
    )
    entry = await book.get(Direction.SENT, reference, peer_domain=ctx.sender_domain)
    if entry is not None:
        log.info("%s from %s: %s", response.xml_name, ctx.sender_domain, response.result)
    return entry


_Move = Callable[[], Awaitable[bool]]

#: How often a FlexOfferRevocation or a FlexOrder checks its offer again when another
#: message moved it between the check and the move.
_TRIES = 3


async def _checked_move(
    check: Callable[[], Awaitable[tuple[list[str], _Move | None]]],
) -> list[str]:
    """The reasons to refuse a message that moves an offer (a revocation, an order).
    `check` reads the offer and judges the message by where it stands: the reasons, and
    the move to make if there are none (None: nothing to move). The move is one conditional
    step (`FlexBook.settle`) that fails when another message (an order, a revocation, the
    peer's answer) moved the offer since the read; the check then runs again on where it
    stands now. An offer that keeps moving under the message is taken as ordered."""
    for _ in range(_TRIES):
        reasons, move = await check()
        if reasons or move is None or await move():
            return reasons
    return [ALREADY_ORDERED]


def _move(
    book: FlexBook, offer: Entry | None, from_: tuple[Standing, ...], to: Standing, by: str
) -> _Move | None:
    """The move of `offer` from a standing in `from_` to `to` by message `by`; None when
    there is no offer to move."""
    if offer is None:
        return None
    return lambda: book.settle(
        offer.direction, offer.peer_domain, offer.message_id, from_=from_, to=to, by=by
    )


# --- the DSO ---------------------------------------------------------------------------------


def dso_flex_router(
    book: FlexBook, market: Market, *, outbox: Store | None = None, clock: Clock = _utc_now
) -> Router:
    """Handlers for what a DSO receives in flex trading: FlexOffer, FlexOfferRevocation,
    D-Prognosis, Metering, and the responses to its FlexRequests, FlexOrders and
    FlexReservationUpdates. `outbox`: the participant's store,
    where the messages it sent without recording them are found (`sent_entry`)."""
    router = Router()

    @router.on(FlexOffer)
    async def flex_offer(message: FlexOffer, ctx: HandlerContext) -> FlexOfferResponse | None:
        if await _answered_before(book, message, ctx):
            return None
        request_entry = None
        if message.flex_request_message_id is not None:
            request_entry = await sent_entry(
                book, outbox, message.flex_request_message_id, ctx.sender_domain
            )
        now = clock()
        reasons = check_flex_offer(
            message,
            request=model_of(request_entry, FlexRequest),
            request_entry=request_entry,
            now=now,
            market=market,
        )
        await _decided(book, message, ctx, reasons, now)
        return None

    @router.on(FlexOfferRevocation)
    async def flex_offer_revocation(
        message: FlexOfferRevocation, ctx: HandlerContext
    ) -> FlexOfferRevocationResponse | None:
        if await _answered_before(book, message, ctx):
            return None
        now = clock()

        async def check() -> tuple[list[str], _Move | None]:
            offer = await book.get(
                Direction.RECEIVED, message.flex_offer_message_id, peer_domain=ctx.sender_domain
            )
            if offer is not None and offer.message_type != FlexOffer.xml_name:
                offer = None
            reasons = check_revocation(message, offer_entry=offer, now=now)
            revoke = _move(book, offer, (Standing.ACCEPTED,), Standing.REVOKED, message.message_id)
            return reasons, revoke

        await _decided(book, message, ctx, await _checked_move(check), now)
        return None

    @router.on(DPrognosis)
    async def d_prognosis(message: DPrognosis, ctx: HandlerContext) -> DPrognosisResponse | None:
        """Checked (d-prognosis-response.md) and kept; the answer names each FlexOrder this
        DSO had accepted for the point and Period, with whether the prognosis reflects it."""
        if await _answered_before(book, message, ctx):
            return None
        latest = await book.latest_revision(
            Direction.RECEIVED,
            ctx.sender_domain,
            message.congestion_point,
            message.period,
            excluding=message.message_id,
            accepted_only=True,
            message_type=DPrognosis.xml_name,
        )
        now = clock()
        reasons = check_d_prognosis(message, now=now, market=market, latest_revision=latest)
        if reasons:
            await _decided(book, message, ctx, reasons, now)
        statuses = order_statuses(message, *await _orders_and_baseline(book, message, ctx))
        await _decided(book, message, ctx, [], now)
        return DPrognosisResponse(flex_order_statuses=tuple(statuses))

    @router.on(Metering)
    async def metering(message: Metering, ctx: HandlerContext) -> MeteringResponse | None:
        """Checked (metering.md) and kept for the operator (`dso metering`) and settlement."""
        if await _answered_before(book, message, ctx):
            return None
        now = clock()
        await _decided(book, message, ctx, check_metering(message, now=now, market=market), now)
        return None

    @router.on(FlexReservationUpdateResponse)
    async def flex_reservation_update_response(
        message: FlexReservationUpdateResponse, ctx: HandlerContext
    ) -> None:
        await _note_answer(book, outbox, message, ctx, accepted_to=Standing.ACCEPTED)

    @router.on(FlexRequestResponse)
    async def flex_request_response(message: FlexRequestResponse, ctx: HandlerContext) -> None:
        await _note_answer(book, outbox, message, ctx, accepted_to=Standing.ACCEPTED)

    @router.on(FlexOrderResponse)
    async def flex_order_response(message: FlexOrderResponse, ctx: HandlerContext) -> None:
        order = await _note_answer(book, outbox, message, ctx, accepted_to=Standing.ACCEPTED)
        if order is None or not order.reference:
            return
        if message.result is Result.REJECTED:
            # The AGR refused the order: the offer it named is not ordered after all.
            await book.settle(
                Direction.RECEIVED,
                ctx.sender_domain,
                order.reference,
                from_=(Standing.ORDERED,),
                to=Standing.ACCEPTED,
                by=None,
            )
        else:  # an order sent without the desk (which settles the offer before it sends)
            await book.settle(
                Direction.RECEIVED,
                ctx.sender_domain,
                order.reference,
                from_=(Standing.ACCEPTED,),
                to=Standing.ORDERED,
                by=order.message_id,
            )

    return router


async def _orders_and_baseline(
    book: FlexBook, prognosis: DPrognosis, ctx: HandlerContext
) -> tuple[list[FlexOrder], DPrognosis | None]:
    """The FlexOrders this DSO sent the prognosis's AGR for its point and Period that the AGR
    accepted, and the prognosis accepted last before the first of them (the baseline they
    were ordered against; `adapter.flex.rules.order_statuses`)."""
    orders = [
        (entry, order)
        for entry in await book.entries(Direction.SENT, FlexOrder.xml_name)
        if entry.peer_domain == ctx.sender_domain
        and entry.standing is Standing.ACCEPTED
        and entry.period == prognosis.period
        and entry.congestion_point == prognosis.congestion_point
        for order in (model_of(entry, FlexOrder),)
        if order is not None
    ]
    if not orders:
        return [], None
    first = min(entry.recorded_at for entry, _ in orders)
    earlier = [
        entry
        for entry in await book.entries(Direction.RECEIVED, DPrognosis.xml_name)
        if entry.peer_domain == ctx.sender_domain
        and entry.standing is Standing.ACCEPTED
        and entry.period == prognosis.period
        and entry.congestion_point == prognosis.congestion_point
        and entry.recorded_at <= first
    ]
    baseline = model_of(earlier[-1], DPrognosis) if earlier else None
    return [order for _, order in orders], baseline


# --- the AGR ---------------------------------------------------------------------------------


def agr_flex_router(
    book: FlexBook, market: Market, *, outbox: Store | None = None, clock: Clock = _utc_now
) -> Router:
    """Handlers for what an AGR receives in flex trading: FlexRequest, FlexOrder,
    FlexReservationUpdate, FlexSettlement, and the responses to its FlexOffers,
    FlexOfferRevocations, D-Prognoses and Metering (`outbox` as for the DSO's)."""
    router = Router()

    @router.on(FlexRequest)
    async def flex_request(message: FlexRequest, ctx: HandlerContext) -> FlexRequestResponse | None:
        if await _answered_before(book, message, ctx):
            return None
        latest = await book.latest_revision(
            Direction.RECEIVED,
            ctx.sender_domain,
            message.congestion_point,
            message.period,
            excluding=message.message_id,
            accepted_only=True,  # "a higher sequence number was already accepted"
        )
        now = clock()
        reasons = check_flex_request(message, now=now, market=market, latest_revision=latest)
        await _decided(book, message, ctx, reasons, now)
        return None

    @router.on(FlexOrder)
    async def flex_order(message: FlexOrder, ctx: HandlerContext) -> FlexOrderResponse | None:
        if await _answered_before(book, message, ctx):
            return None
        now = clock()
        offer_id = message.flex_offer_message_id

        async def check() -> tuple[list[str], _Move | None]:
            offer = None
            if offer_id is not None:
                offer = await sent_entry(book, outbox, offer_id, ctx.sender_domain)
            reasons = check_flex_order(
                message,
                offer=model_of(offer, FlexOffer),
                offer_entry=offer,
                now=now,
                market=market,
            )
            if offer is not None and offer.settled_by == message.message_id:
                return reasons, None  # ordered by this very message, handled again
            from_ = (Standing.OPEN, Standing.ACCEPTED)
            return reasons, _move(book, offer, from_, Standing.ORDERED, message.message_id)

        await _decided(book, message, ctx, await _checked_move(check), now)
        return None

    @router.on(FlexSettlement)
    async def flex_settlement(
        message: FlexSettlement, ctx: HandlerContext
    ) -> FlexSettlementResponse:
        """Accepted with a verdict per order (flex-settlement-response.md); rejected with
        them too, as the schema wants at least one FlexOrderSettlementStatus always."""
        orders = [
            order
            for entry in await book.entries(Direction.RECEIVED, FlexOrder.xml_name)
            if entry.peer_domain == ctx.sender_domain and entry.standing is Standing.ACCEPTED
            for order in (model_of(entry, FlexOrder),)
            if order is not None
        ]
        reasons, statuses = check_flex_settlement(message, orders=orders, market=market)
        disputed = sum(1 for status in statuses if status.disposition == "Disputed")
        log.info(
            "%s FlexSettlement from %s: %d order settlements, %d disputed",
            "rejected" if reasons else "accepted",
            ctx.sender_domain,
            len(statuses),
            disputed,
        )
        if reasons:
            return FlexSettlementResponse(
                result=Result.REJECTED,
                rejection_reason="; ".join(reasons),
                flex_order_settlement_statuses=statuses,
            )
        return FlexSettlementResponse(flex_order_settlement_statuses=statuses)

    @router.on(FlexReservationUpdate)
    async def flex_reservation_update(
        message: FlexReservationUpdate, ctx: HandlerContext
    ) -> FlexReservationUpdateResponse | None:
        """Checked (flex-reservation-update-response.md) and kept for the operator (`agr
        reservations`): the latest accepted one of a point and Period is what stays
        reserved."""
        if await _answered_before(book, message, ctx):
            return None
        now = clock()
        reasons = check_flex_reservation_update(message, now=now, market=market)
        await _decided(book, message, ctx, reasons, now)
        return None

    @router.on(FlexOfferResponse)
    async def flex_offer_response(message: FlexOfferResponse, ctx: HandlerContext) -> None:
        await _note_answer(book, outbox, message, ctx, accepted_to=Standing.ACCEPTED)

    @router.on(DPrognosisResponse)
    async def d_prognosis_response(message: DPrognosisResponse, ctx: HandlerContext) -> None:
        await _note_answer(book, outbox, message, ctx, accepted_to=Standing.ACCEPTED)

    @router.on(MeteringResponse)
    async def metering_response(message: MeteringResponse, ctx: HandlerContext) -> None:
        await _note_answer(book, outbox, message, ctx, accepted_to=Standing.ACCEPTED)

    @router.on(FlexOfferRevocationResponse)
    async def flex_offer_revocation_response(
        message: FlexOfferRevocationResponse, ctx: HandlerContext
    ) -> None:
        revocation = await _note_answer(book, outbox, message, ctx, accepted_to=Standing.ACCEPTED)
        if revocation is not None and revocation.reference and message.result is Result.ACCEPTED:
            await book.settle(
                Direction.SENT,
                ctx.sender_domain,
                revocation.reference,
                from_=(Standing.OPEN, Standing.ACCEPTED),
                to=Standing.REVOKED,
                by=revocation.message_id,
            )

    return router
