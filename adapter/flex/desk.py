"""The operator's side of flex trading: the market a configuration describes, the messages
the command line composes from files and from the state, and sending them after they were
recorded.

    market = market_of(config)
    async with participant_for(config) as dso:            # the DSO's flex handlers included
        book = flex_book_for(dso.store)
        request, response = await send_recorded(dso, book, flex_request, to="agr.example.com")

A message is recorded in the flex state before it leaves (`send_recorded`): the peer's answer
(a FlexOffer naming our FlexRequest, a FlexOrder naming our FlexOffer) may arrive at once,
and is checked against it.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from adapter.config import Config, ConfigError
from adapter.errors import ResponseTimeout
from adapter.flex.handlers import agr_flex_router, dso_flex_router, entry_of
from adapter.flex.rules import Market, day_bounds
from adapter.flex.state import Direction, Entry, Standing
from adapter.participant import Participant
from adapter.router import Router
from adapter.store.flex import FlexBook
from adapter.tables import REQUIRED, Table
from adapter.uftp import codec, envelope
from adapter.uftp.errors import AdapterError
from adapter.uftp.messages import (
    AvailableRequested,
    FlexOffer,
    FlexOfferOption,
    FlexOfferOptionISP,
    FlexOrder,
    FlexOrderISP,
    FlexRequest,
    FlexRequestISP,
    PayloadMessage,
    PayloadResponse,
    Role,
)

__all__ = [
    "FlexFileError",
    "book_of",
    "flex_router_for",
    "load_flex_request",
    "load_offer",
    "market_of",
    "order_for",
    "send_recorded",
]


class FlexFileError(AdapterError, ValueError):
    """A mistake in a flex-request or offer file: `path: field: problem`."""

    def __init__(self, path: Path, field: str | None, problem: str) -> None:
        self.path, self.field, self.problem = path, field, problem
        super().__init__(f"{path}: {field + ': ' if field else ''}{problem}")


def market_of(config: Config) -> Market:
    """The market of the [flex] table; a DSO's congestion points from its portfolio file
    (with whether each takes mutually exclusive offers), or the listed ones."""
    flex = config.flex
    points: dict[str, bool] | None = None
    if flex.portfolio is not None:
        from adapter.dso.portfolio import PortfolioFileError, load_portfolio

        try:
            update = load_portfolio(flex.portfolio, time_zone=flex.time_zone)
        except PortfolioFileError as exc:
            raise ConfigError(str(config.path), "flex.portfolio", str(exc)) from None
        points = {p.entity_address: p.mutex_offers_supported for p in update.congestion_points}
    if flex.congestion_points is not None:
        points = {**(points or {}), **dict.fromkeys(flex.congestion_points, True)}
    return Market(flex.isp_duration, flex.time_zone, points)


def book_of(participant: Participant) -> FlexBook:
    """The participant's flex book; with a bus, each change of it is an event too
    (``flex.<change>``, `adapter.bus.journal.Journal.flex_change`), as the CRO's register
    changes are."""
    from adapter.store import flex_book_for

    journal = participant.journal
    return flex_book_for(
        participant.store, events=journal.flex_change if journal is not None else None
    )


def flex_router_for(participant: Participant, config: Config) -> Router | None:
    """The ready-made flex handlers of a DSO or an AGR participant, None for a CRO."""
    if participant.role is Role.CRO:
        return None
    book = book_of(participant)
    market = market_of(config)
    if participant.role is Role.DSO:
        return dso_flex_router(book, market, outbox=participant.store)
    return agr_flex_router(book, market, outbox=participant.store)


async def send_recorded(
    participant: Participant,
    book: FlexBook,
    message: PayloadMessage,
    *,
    to: str,
    timeout: float = 60.0,
    settle: tuple[Entry, tuple[Standing, ...], Standing] | None = None,
) -> tuple[PayloadMessage, PayloadResponse]:
    """Send `message` to `to` as a request, recorded in `book` first, and await its response.

    `settle` (entry, from, to): move that entry too before the message leaves, naming it - a
    received offer to ORDERED as its FlexOrder goes out, so that a revocation arriving now is
    refused. If the entry is no longer in one of the standings, nothing is sent and
    `LookupError` says where it stands. Raises what `Participant.request` raises.
    """
    record = await participant.compose(message, to)
    inner = envelope.parse_envelope(record.envelope).sealed[envelope.SIGNATURE_BYTES :]
    filled = codec.decode(inner)
    now = record.created_at
    await book.record(
        entry_of(
            filled,
            direction=Direction.SENT,
            peer_domain=record.recipient_domain,
            inner_xml=inner,
            recorded_at=now,
        )
    )
    if settle is not None:
        entry, from_, to_standing = settle
        if not await book.settle(
            entry.direction,
            entry.peer_domain,
            entry.message_id,
            from_=from_,
            to=to_standing,
            by=filled.message_id,
        ):
            await book.settle(
                Direction.SENT,
                record.recipient_domain,
                filled.message_id,
                from_=(Standing.OPEN,),
                to=Standing.REJECTED,
                by=None,
                reasons=("not sent",),
            )
            now_entry = await book.get(entry.direction, entry.message_id)
            where = now_entry.shown_standing(now) if now_entry else "unknown"
            raise LookupError(f"{entry.message_type} {entry.message_id} is {where}")
    future = participant.waiters.expect(filled, record.recipient_domain)
    try:
        await participant.outbox.submit(record)
        try:
            async with asyncio.timeout(timeout):
                return filled, await future
        except TimeoutError:
            raise ResponseTimeout(
                f"no response to {filled.xml_name} {filled.message_id} within {timeout:g} s",
                filled.message_id,
            ) from None
    finally:
        participant.waiters.forget(filled)


# --- files -----------------------------------------------------------------------------------


def _read(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlexFileError(path, None, str(getattr(exc, "strerror", None) or exc)) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise FlexFileError(path, None, f"not valid {path.suffix[1:] or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise FlexFileError(path, None, "expected a table (TOML) or an object (JSON)")
    return data


class _Fields(Table):
    """Typed access to one table of a file, errors naming the field."""

    noun = "field"

    def __init__(self, path: Path, data: Mapping[str, Any], where: str, known: set[str]):
        self.path = path
        super().__init__(data, where, sorted(known))

    def error(self, key: str | None, problem: str) -> FlexFileError:
        return FlexFileError(self.path, self.name(key), problem)

    def integer(self, key: str, default: Any = REQUIRED) -> int:
        value: int = self.value(key, int, "an integer", default)
        return value

    def text(self, key: str, default: Any = REQUIRED) -> str:
        value: str = self.value(key, str, "a string", default)
        return value

    def day(self, key: str) -> date:
        value = self.data.get(key)
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            return date.fromisoformat(self.text(key))
        except ValueError:
            raise self.error(key, f"expected a date YYYY-MM-DD, got {value!r}") from None

    def instant(self, key: str) -> datetime | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                value = None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self.error(
                key, "expected an instant with its UTC offset, e.g. 2026-12-07T18:00:00+01:00"
            )
        return value

    def decimal(self, key: str, default: Any = REQUIRED) -> Decimal:
        value = self.data.get(key, default)
        if value is REQUIRED:
            raise self.error(key, "missing; expected a number")
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            return Decimal(str(value))
        except InvalidOperation:
            raise self.error(key, f"expected a number, got {value!r}") from None

    def rows(self, key: str) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = self.value(key, list, "an array of tables", REQUIRED)
        if not rows or not all(isinstance(row, dict) for row in rows):
            raise self.error(key, "expected one table or more ([[" + key + "]])")
        return rows


_REQUEST_FIELDS = {
    "congestion_point",
    "period",
    "isps",
    "expiration",
    "revision",
    "contract_id",
    "service_type",
}
_REQUEST_ISP_FIELDS = {"start", "duration", "min_power", "max_power", "disposition"}


def load_flex_request(path: Path, market: Market, *, revision: int) -> FlexRequest:
    """The FlexRequest a file describes (TOML, or JSON for a .json file)::

        congestion_point = "ea1.2026-01.test.uftp-demo:cp-north"
        period = 2026-12-08
        expiration = 2026-12-07T18:00:00+01:00  # default: the start of the first Requested ISP
        [[isps]]
        start = 69            # the first ISP of the day is 1
        duration = 8          # default 1
        min_power = -250000   # Watts (power.md: positive is consumption)
        max_power = 0
        disposition = "Requested"   # or "Available" (default)

    `revision` is the Revision unless the file gives one. ISP-Duration and TimeZone are the
    market's. The receiver's checks are not made here: the AGR makes them.
    """
    fields = _Fields(path, _read(path), "", _REQUEST_FIELDS)
    isps = []
    for index, row in enumerate(fields.rows("isps")):
        isp = _Fields(path, row, f"isps[{index}]", _REQUEST_ISP_FIELDS)
        disposition = isp.text("disposition", "Available")
        try:
            kind = AvailableRequested(disposition)
        except ValueError:
            raise isp.error("disposition", "expected 'Requested' or 'Available'") from None
        isps.append(
            FlexRequestISP(
                start=isp.integer("start"),
                min_power=isp.integer("min_power"),
                max_power=isp.integer("max_power"),
                duration=isp.integer("duration", 1),
                disposition=kind,
            )
        )
    period = fields.day("period")
    expiration = fields.instant("expiration")
    if expiration is None:
        requested = [isp.start for isp in isps if isp.disposition is AvailableRequested.REQUESTED]
        first = min(requested or [isp.start for isp in isps])
        start, _ = day_bounds(period, market.zone)
        expiration = (start + (first - 1) * market.isp_duration).astimezone(market.zone)
    return FlexRequest(
        isp_duration=market.isp_duration,
        time_zone=market.time_zone,
        period=period,
        congestion_point=fields.text("congestion_point"),
        revision=fields.integer("revision", revision),
        expiration_date_time=expiration,
        contract_id=fields.text("contract_id", None),
        service_type=fields.text("service_type", None),
        isps=tuple(isps),
    )


_OFFER_FIELDS = {"currency", "expiration", "options", "contract_id", "baseline_reference"}
_OPTION_FIELDS = {"reference", "price", "min_activation_factor", "isps"}
_OFFER_ISP_FIELDS = {"start", "duration", "power"}


def load_offer(path: Path, request: FlexRequest) -> FlexOffer:
    """The FlexOffer a file describes, in answer to `request` (its Period, congestion point,
    ISP-Duration and TimeZone)::

        currency = "EUR"                       # default EUR
        expiration = 2026-12-07T20:00:00+01:00 # default: the request's ExpirationDateTime
        [[options]]
        reference = "full"                     # needed when there are several
        price = "1250.00"
        min_activation_factor = "0.5"          # default 1.00
        [[options.isps]]
        start = 69
        duration = 8
        power = -250000
    """
    fields = _Fields(path, _read(path), "", _OFFER_FIELDS)
    options = []
    for index, row in enumerate(fields.rows("options")):
        option = _Fields(path, row, f"options[{index}]", _OPTION_FIELDS)
        isps = []
        for number, isp_row in enumerate(option.rows("isps")):
            isp = _Fields(path, isp_row, f"options[{index}].isps[{number}]", _OFFER_ISP_FIELDS)
            isps.append(
                FlexOfferOptionISP(
                    start=isp.integer("start"),
                    power=isp.integer("power"),
                    duration=isp.integer("duration", 1),
                )
            )
        options.append(
            FlexOfferOption(
                option_reference=option.text("reference", f"option-{index + 1}"),
                price=option.decimal("price"),
                min_activation_factor=option.decimal("min_activation_factor", "1.00"),
                isps=tuple(isps),
            )
        )
    return FlexOffer(
        isp_duration=request.isp_duration,
        time_zone=request.time_zone,
        period=request.period,
        congestion_point=request.congestion_point,
        expiration_date_time=fields.instant("expiration") or request.expiration_date_time,
        flex_request_message_id=request.message_id,
        contract_id=fields.text("contract_id", request.contract_id),
        baseline_reference=fields.text("baseline_reference", None),
        currency=fields.text("currency", "EUR"),
        offer_options=tuple(options),
    )


def order_for(
    offer: FlexOffer,
    *,
    option_reference: str | None,
    activation_factor: Decimal,
    order_reference: str,
) -> FlexOrder:
    """The FlexOrder of one option of `offer`: its ISPs copied unchanged (flex-order.md: "This
    ISP list should be copied from the FlexOffer message ... without modification"), its
    price (flex-order.md: "Usually, the price should match the price of the related
    FlexOffer"). `LookupError` when the offer has no such option, or several and none is
    named."""
    options = offer.offer_options
    if option_reference is None:
        if len(options) != 1:
            names = ", ".join(option.option_reference for option in options)
            raise LookupError(f"the offer has {len(options)} options ({names}): name one")
        option = options[0]
    else:
        found = [o for o in options if o.option_reference == option_reference]
        if not found:
            names = ", ".join(option.option_reference for option in options)
            raise LookupError(f"the offer has no option {option_reference!r} (it has {names})")
        option = found[0]
    if activation_factor < option.min_activation_factor:
        raise LookupError(
            f"activation factor {activation_factor} is below the option's minimum "
            f"{option.min_activation_factor}"
        )
    return FlexOrder(
        isp_duration=offer.isp_duration,
        time_zone=offer.time_zone,
        period=offer.period,
        congestion_point=offer.congestion_point,
        flex_offer_message_id=offer.message_id,
        contract_id=offer.contract_id,
        d_prognosis_message_id=offer.d_prognosis_message_id,
        baseline_reference=offer.baseline_reference,
        price=option.price,
        currency=offer.currency,
        order_reference=order_reference,
        option_reference=option.option_reference,
        activation_factor=activation_factor,
        isps=tuple(FlexOrderISP(isp.start, isp.power, isp.duration) for isp in option.isps),
        version=offer.version,
    )
