"""Conversion between this adapter's message models and shapeshifter-uftp's dataclasses.

For projects migrating from shapeshifter-uftp (2.4.x) one message type at a time: handlers
written against its dataclasses can be fed from this participant (`to_shapeshifter`), and
messages such code still composes can be sent by it (`from_shapeshifter`). Every type in
`adapter.uftp.MESSAGE_TYPES` converts both ways, nested rows included; the conversion is
field for field, so ours -> theirs -> ours gives back an equal model.

What the conversion bridges:

- Containers and rows: their lists of mutable dataclasses, our tuples of frozen dataclasses
  and NamedTuples.
- Periods: their `xsdata` `XmlDate`, our `datetime.date`. An `XmlDate` may carry the zone
  suffix xs:date allows ("2024-05-01+02:00"); a Period is a calendar day in the message's
  TimeZone, so the model drops it, as the codec does when reading XML.
- TimeStamp and ExpirationDateTime: theirs is the attribute text (a `str`), ours an aware
  `datetime`. We write `datetime.isoformat()`, so a stamp they spelled "...Z" comes back as
  "...+00:00": the same instant and offset, spelled differently. A stamp without offset is
  read as UTC (the codec's rule for 3.x); digits beyond microseconds are cut, as `datetime`
  holds no more.
- ISP-Duration: their `XmlDuration` (text), our `timedelta`, written in its shortest form
  ("PT900S" comes back as "PT15M").
- Amounts: `Decimal` on both sides, but their constructors round a price to 4 and an
  activation factor to 2 decimals; a value with more digits (which the schema refuses)
  makes `to_shapeshifter` raise instead of sending a rounded price.
- Unset metadata: `None` on their side, "" on ours (`time_stamp` is None on both).
- Enums: their `RedispatchBy`, `AcceptedRejected`, `AvailableRequested` and
  `AcceptedDisputed`, our enums of the same values (`Result` for `AcceptedRejected`), mapped
  through tables built from our enums so that a divergence fails at import. Their parser
  leaves these attributes as plain text despite the enum types of their fields; the tables
  answer for text and members alike. Their `MeteringProfileEnum` and `MeteringUnit` are
  plain `Enum`s, not `StrEnum`s, so their tables list the values beside the members.
- Booleans: their parser gives `bool`; text set by hand (`"false"`) is refused, not read as
  truthy.
- Response references: each 3.x response names its reference attribute after its request;
  their dataclass field names follow that, and ours is `reference_message_id` for all. Note
  their `dso_portfolio_update_message_id`, written as DSOPortfolioUpdateResponseMessageID like
  the XSD spells it.

Quirks of theirs (each shown by a test in tests/interop):

- Their `from_xml`, and so `unseal_message`, does not name the class to build: xsdata takes
  the last-imported dataclass, of any package, named like the root element. Ours are named
  after the XSD types too, so in a process that imports both libraries their parser may build
  our models from attributes it cannot map (empty or broken objects). Importing this module
  confines their parser to their own package (`_confine_their_parser`). The quirks below
  are beyond what a conversion can bridge.
- They know only the 3.x reference attributes. Their parser cannot read a draft (4.0.0)
  response, which has ReferenceMessageID instead (a TypeError for the missing 3.x field),
  and a draft response they write carries the 3.x attribute, which the draft schema rejects.
- Their `TestMessageResponse` has `result` and `rejection_reason` and always writes Result,
  which the 3.x schema does not allow on that type, so our codec rejects their XML of it. It
  has no reference either: a model whose `reference_message_id` is set (the draft has one)
  makes `to_shapeshifter` raise rather than silently drop it.
- Their constructors refuse an empty list where the schema requires an element (a
  CongestionPoint without Connection, an AGRPortfolioQueryResponse without DSO-View, ...).
  Our models hold such values until the codec validates them, so `to_shapeshifter` raises
  their `ValueError` for them.
- Their FlexOffer requires FlexRequestMessageID unless Unsolicited is true, which 3.0.0 has
  no attribute for: an unsolicited 3.0.0 offer (no FlexRequestMessageID, as that Version
  says it) cannot be built on their side, and `to_shapeshifter` raises their `TypeError`.
  Their FlexOrder does the same with FlexOfferMessageID, which only 3.0.0 requires anyway.
- Their FlexSettlement is a response class (as the 3.x XSD has it) and always writes
  Result, which the draft does not allow on it: our codec refuses their draft settlement.
  Our model carries `result` and `rejection_reason` as fields of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any, TypeVar

from adapter.uftp.durations import format_duration, parse_duration
from adapter.uftp.messages import (
    AcceptedDisputed,
    AGRPortfolioQuery,
    AGRPortfolioQueryCongestionPoint,
    AGRPortfolioQueryConnection,
    AGRPortfolioQueryDSOPortfolio,
    AGRPortfolioQueryDSOView,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    AGRPortfolioUpdateResponse,
    AvailableRequested,
    ContractSettlement,
    ContractSettlementISP,
    ContractSettlementPeriod,
    DPrognosis,
    DPrognosisISP,
    DPrognosisResponse,
    DSOPortfolioQuery,
    DSOPortfolioQueryCongestionPoint,
    DSOPortfolioQueryConnection,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    DSOPortfolioUpdateResponse,
    FlexMessage,
    FlexOffer,
    FlexOfferOption,
    FlexOfferOptionISP,
    FlexOfferResponse,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrder,
    FlexOrderISP,
    FlexOrderResponse,
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexOrderSettlementStatus,
    FlexOrderStatus,
    FlexRequest,
    FlexRequestISP,
    FlexRequestResponse,
    FlexReservationUpdate,
    FlexReservationUpdateISP,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Metering,
    MeteringISP,
    MeteringProfile,
    MeteringProfileEnum,
    MeteringResponse,
    MeteringUnit,
    PayloadMessage,
    PayloadResponse,
    RedispatchBy,
    Result,
    TestMessage,
    TestMessageResponse,
)

try:
    from shapeshifter_uftp import transport
    from shapeshifter_uftp import uftp as ss
    from xsdata.models.datatype import XmlDate, XmlDateTime, XmlDuration
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "adapter.interop.shapeshifter needs the optional shapeshifter-uftp dependencies; "
        f"install them with `pip install 'uftp-adapter[shapeshifter]'` ({exc})"
    ) from exc

__all__ = ["from_shapeshifter", "to_shapeshifter"]

#: The package whose dataclasses shapeshifter-uftp's parser may build.
THEIR_PACKAGE = "shapeshifter_uftp"

T = TypeVar("T")
R = TypeVar("R")

#: Metadata fields both sides name alike; "" on ours is None on theirs.
_METADATA = ("version", "sender_domain", "recipient_domain", "message_id", "conversation_id")


def _confine_their_parser() -> None:
    """Make shapeshifter-uftp's parser build only its own classes.

    Without this, whichever of the two libraries was imported last decides what their
    `unseal_message` returns (see the module docstring), so a migration that runs both in one
    process would break their service by importing ours. A `models_package` the application
    set on their parser itself is left alone.
    """
    context = transport.parser.context
    if context.models_package is None:
        context.models_package = THEIR_PACKAGE
        context.reset()  # drop the index of root names built before


_confine_their_parser()


# --- values ---------------------------------------------------------------------------------


def _opt(convert: Callable[[T], R], value: T | None) -> R | None:
    return None if value is None else convert(value)


@lru_cache(maxsize=4096)
def _xml_date(value: date) -> XmlDate:
    # A portfolio repeats a few dates over many rows; XmlDate is immutable, so share them.
    return XmlDate(value.year, value.month, value.day)


@lru_cache(maxsize=4096)
def _date_from_xml(value: XmlDate) -> date:
    return value.to_date()


def _date_from(value: Any) -> date:
    """A Period from what their field may hold: XmlDate as parsed, or date or text as set."""
    if isinstance(value, XmlDate):
        return _date_from_xml(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value.strip()[:10])
    raise TypeError(f"a Period is an XmlDate, a date or ISO text, not {value!r}")


def _stamp_to(value: datetime, what: str = "time_stamp") -> str:
    if value.tzinfo is None:
        # Their TimeStamp pattern requires an offset, and our codec refuses naive stamps.
        raise ValueError(f"{what} must be timezone-aware")
    return value.isoformat()


def _stamp_from(value: Any) -> datetime:
    """Their TimeStamp (text as parsed; an XmlDateTime or datetime if set so) as a datetime."""
    if isinstance(value, XmlDateTime):
        stamp = value.to_datetime()
    elif isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        stamp = datetime.fromisoformat(value.strip())
    else:
        raise TypeError(f"a TimeStamp is ISO text, an XmlDateTime or a datetime, not {value!r}")
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _bool_from(value: Any, what: str = "MutexOffersSupported") -> bool:
    # bool("false") is True: refuse text rather than read it wrong.
    if isinstance(value, bool):
        return value
    raise TypeError(f"{what} is a bool, not {value!r}")


def _opt_bool_from(value: Any, what: str) -> bool | None:
    return None if value is None else _bool_from(value, what)


def _duration_to(value: timedelta) -> XmlDuration:
    return XmlDuration(format_duration(value))


def _duration_from(value: Any) -> timedelta:
    """Their ISP-Duration (an XmlDuration as parsed; text or a timedelta if set so)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str | XmlDuration):
        return parse_duration(str(value))
    raise TypeError(f"an ISP-Duration is an XmlDuration, text or a timedelta, not {value!r}")


def _exact(value: Decimal, digits: int, what: str) -> Decimal:
    """`value`, refused if their constructor would round it (to `digits` decimals)."""
    if value != round(value, digits):
        raise ValueError(f"{what} {value} has more than {digits} decimals; they would round it")
    return value


def _decimal_from(value: Any) -> Decimal:
    # Their parser gives Decimal; code may have set an int. A float is refused: it is not
    # the exact amount the sender wrote.
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"an amount is a Decimal or an int, not {value!r}")


_E = TypeVar("_E", bound=Enum)


def _member(table: Mapping[Any, _E], value: Any, what: str) -> _E:
    # Both sides use StrEnums, so the tables also answer for plain text values.
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{value!r} is not a valid {what}") from None


_REDISPATCH_TO: dict[RedispatchBy, Any] = {r: ss.RedispatchBy(r.value) for r in RedispatchBy}
_REDISPATCH_FROM: dict[Any, RedispatchBy] = {v: k for k, v in _REDISPATCH_TO.items()}
_RESULT_TO: dict[Result, Any] = {r: ss.AcceptedRejected(r.value) for r in Result}
_RESULT_FROM: dict[Any, Result] = {v: k for k, v in _RESULT_TO.items()}
_DISPOSITION_TO: dict[AvailableRequested, Any] = {
    d: ss.AvailableRequested(d.value) for d in AvailableRequested
}
_DISPOSITION_FROM: dict[Any, AvailableRequested] = {v: k for k, v in _DISPOSITION_TO.items()}
_VERDICT_TO: dict[AcceptedDisputed, Any] = {
    d: ss.AcceptedDisputed(d.value) for d in AcceptedDisputed
}
_VERDICT_FROM: dict[Any, AcceptedDisputed] = {v: k for k, v in _VERDICT_TO.items()}
_PROFILE_TO: dict[MeteringProfileEnum, Any] = {
    p: ss.MeteringProfileEnum(p.value) for p in MeteringProfileEnum
}
_PROFILE_FROM: dict[Any, MeteringProfileEnum] = {
    **{v: k for k, v in _PROFILE_TO.items()},
    **{v.value: k for k, v in _PROFILE_TO.items()},
}
_UNIT_TO: dict[MeteringUnit, Any] = {u: ss.MeteringUnit(u.value) for u in MeteringUnit}
_UNIT_FROM: dict[Any, MeteringUnit] = {
    **{v: k for k, v in _UNIT_TO.items()},
    **{v.value: k for k, v in _UNIT_TO.items()},
}


def _redispatch_to(value: RedispatchBy) -> Any:
    return _member(_REDISPATCH_TO, value, "RedispatchBy")


def _redispatch_from(value: Any) -> RedispatchBy:
    return _member(_REDISPATCH_FROM, value, "RedispatchBy")


# --- metadata and response attributes -------------------------------------------------------


def _metadata_to(message: PayloadMessage) -> dict[str, Any]:
    kwargs: dict[str, Any] = {name: getattr(message, name) or None for name in _METADATA}
    kwargs["time_stamp"] = _opt(_stamp_to, message.time_stamp)
    return kwargs


def _metadata_from(obj: Any, version: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {name: getattr(obj, name) or "" for name in _METADATA}
    if version is not None:
        fields["version"] = version
    fields["time_stamp"] = _opt(_stamp_from, obj.time_stamp)
    return fields


def _response_to(message: PayloadResponse, reference: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "result": _member(_RESULT_TO, message.result, "Result"),
        "rejection_reason": message.rejection_reason,
    }
    if reference is not None:
        kwargs[reference] = message.reference_message_id or None
    elif message.reference_message_id:
        raise ValueError(
            f"shapeshifter-uftp's {message.xml_name} has no reference attribute; "
            f"reference_message_id {message.reference_message_id!r} would be lost"
        )
    return kwargs


def _response_from(obj: Any, reference: str | None) -> dict[str, Any]:
    return {
        "result": _member(_RESULT_FROM, obj.result, "Result"),
        "rejection_reason": obj.rejection_reason,
        "reference_message_id": (getattr(obj, reference) or "") if reference else "",
    }


# --- message bodies: ours -> keyword arguments of theirs ------------------------------------


def _no_body(_: object) -> dict[str, Any]:
    return {}


def _dso_update_to(m: DSOPortfolioUpdate) -> dict[str, Any]:
    point, row = ss.DsoPortfolioUpdateCongestionPoint, ss.DsoPortfolioUpdateConnection
    return {
        "time_zone": m.time_zone,
        "congestion_points": [
            point(
                entity_address=cp.entity_address,
                start_period=_xml_date(cp.start_period),
                end_period=_opt(_xml_date, cp.end_period),
                mutex_offers_supported=cp.mutex_offers_supported,
                day_ahead_redispatch_by=_redispatch_to(cp.day_ahead_redispatch_by),
                intraday_redispatch_by=_opt(_redispatch_to, cp.intraday_redispatch_by),
                connections=[
                    row(
                        entity_address=c.entity_address,
                        start_period=_xml_date(c.start_period),
                        end_period=_opt(_xml_date, c.end_period),
                    )
                    for c in cp.connections
                ],
            )
            for cp in m.congestion_points
        ],
    }


def _dso_query_to(m: DSOPortfolioQuery) -> dict[str, Any]:
    return {
        "time_zone": m.time_zone,
        "period": _xml_date(m.period),
        "entity_address": m.entity_address,
    }


def _dso_query_point_to(cp: DSOPortfolioQueryCongestionPoint) -> Any:
    row = ss.DsoPortfolioQueryConnection
    return ss.DsoPortfolioQueryCongestionPoint(
        entity_address=cp.entity_address,
        connections=[
            row(entity_address=c.entity_address, agr_domain=c.agr_domain) for c in cp.connections
        ],
    )


def _dso_query_response_to(m: DSOPortfolioQueryResponse) -> dict[str, Any]:
    return {
        "time_zone": m.time_zone,
        "period": _xml_date(m.period),
        "congestion_point": _opt(_dso_query_point_to, m.congestion_point),
    }


def _agr_update_to(m: AGRPortfolioUpdate) -> dict[str, Any]:
    row = ss.AgrPortfolioUpdateConnection
    return {
        "time_zone": m.time_zone,
        "connections": [
            row(
                entity_address=c.entity_address,
                start_period=_xml_date(c.start_period),
                end_period=_opt(_xml_date, c.end_period),
            )
            for c in m.connections
        ],
    }


def _agr_query_to(m: AGRPortfolioQuery) -> dict[str, Any]:
    return {"time_zone": m.time_zone, "period": _xml_date(m.period)}


def _agr_rows_to(connections: tuple[AGRPortfolioQueryConnection, ...]) -> list[Any]:
    row = ss.AgrPortfolioQueryResponseConnection
    return [row(entity_address=c.entity_address) for c in connections]


def _agr_view_to(view: AGRPortfolioQueryDSOView) -> Any:
    point = ss.AgrPortfolioQueryResponseCongestionPoint
    return ss.AgrPortfolioQueryResponseDSOView(
        dso_portfolios=[
            ss.AgrPortfolioQueryResponseDSOPortfolio(
                dso_domain=portfolio.dso_domain,
                congestion_points=[
                    point(
                        entity_address=cp.entity_address,
                        mutex_offers_supported=cp.mutex_offers_supported,
                        day_ahead_redispatch_by=_redispatch_to(cp.day_ahead_redispatch_by),
                        intraday_redispatch_by=_opt(_redispatch_to, cp.intraday_redispatch_by),
                        connections=_agr_rows_to(cp.connections),
                    )
                    for cp in portfolio.congestion_points
                ],
            )
            for portfolio in view.dso_portfolios
        ],
        connections=_agr_rows_to(view.connections),
    )


def _agr_query_response_to(m: AGRPortfolioQueryResponse) -> dict[str, Any]:
    return {
        "time_zone": m.time_zone,
        "period": _xml_date(m.period),
        "dso_views": [_agr_view_to(view) for view in m.dso_views],
    }


def _flex_to(m: FlexMessage[PayloadResponse]) -> dict[str, Any]:
    return {
        "isp_duration": _duration_to(m.isp_duration),
        "time_zone": m.time_zone,
        "period": _xml_date(m.period),
        "congestion_point": m.congestion_point,
    }


def _flex_request_to(m: FlexRequest) -> dict[str, Any]:
    row = ss.FlexRequestISP
    return {
        **_flex_to(m),
        "revision": m.revision,
        "expiration_date_time": _stamp_to(m.expiration_date_time, "expiration_date_time"),
        "contract_id": m.contract_id,
        "service_type": m.service_type,
        "isps": [
            row(
                disposition=_opt(_disposition_to, isp.disposition),
                min_power=isp.min_power,
                max_power=isp.max_power,
                start=isp.start,
                duration=isp.duration,
            )
            for isp in m.isps
        ],
    }


def _disposition_to(value: AvailableRequested) -> Any:
    return _member(_DISPOSITION_TO, value, "Disposition")


def _flex_offer_to(m: FlexOffer) -> dict[str, Any]:
    row = ss.FlexOfferOptionISP
    return {
        **_flex_to(m),
        "expiration_date_time": _stamp_to(m.expiration_date_time, "expiration_date_time"),
        "unsolicited": m.unsolicited,
        "flex_request_message_id": m.flex_request_message_id,
        "contract_id": m.contract_id,
        "d_prognosis_message_id": m.d_prognosis_message_id,
        "baseline_reference": m.baseline_reference,
        "currency": m.currency,
        "offer_options": [
            ss.FlexOfferOption(
                option_reference=option.option_reference,
                price=_exact(option.price, 4, "Price"),
                min_activation_factor=_exact(
                    option.min_activation_factor, 2, "MinActivationFactor"
                ),
                isps=[
                    row(power=isp.power, start=isp.start, duration=isp.duration)
                    for isp in option.isps
                ],
            )
            for option in m.offer_options
        ],
    }


def _flex_offer_revocation_to(m: FlexOfferRevocation) -> dict[str, Any]:
    return {"flex_offer_message_id": m.flex_offer_message_id}


def _flex_order_to(m: FlexOrder) -> dict[str, Any]:
    row = ss.FlexOrderISP
    return {
        **_flex_to(m),
        "unsolicited": m.unsolicited,
        "flex_offer_message_id": m.flex_offer_message_id,
        "service_type": m.service_type,
        "contract_id": m.contract_id,
        "d_prognosis_message_id": m.d_prognosis_message_id,
        "baseline_reference": m.baseline_reference,
        "price": _exact(m.price, 4, "Price"),
        "currency": m.currency,
        "order_reference": m.order_reference,
        "option_reference": m.option_reference,
        "activation_factor": _exact(m.activation_factor, 2, "ActivationFactor"),
        "isps": [row(power=i.power, start=i.start, duration=i.duration) for i in m.isps],
    }


def _d_prognosis_to(m: DPrognosis) -> dict[str, Any]:
    row = ss.DPrognosisISP
    return {
        **_flex_to(m),
        "revision": m.revision,
        "isps": [row(power=i.power, start=i.start, duration=i.duration) for i in m.isps],
    }


def _d_prognosis_response_to(m: DPrognosisResponse) -> dict[str, Any]:
    row = ss.FlexOrderStatus
    return {
        "flex_order_statuses": [
            row(flex_order_message_id=s.flex_order_message_id, is_validated=s.is_validated)
            for s in m.flex_order_statuses
        ]
    }


def _flex_settlement_to(m: FlexSettlement) -> dict[str, Any]:
    order_row, contract_row = ss.FlexOrderSettlementISP, ss.ContractSettlementISP
    return {
        "result": _member(_RESULT_TO, m.result, "Result"),
        "rejection_reason": m.rejection_reason,
        "period_start": _xml_date(m.period_start),
        "period_end": _xml_date(m.period_end),
        "currency": m.currency,
        "flex_order_settlements": [
            ss.FlexOrderSettlement(
                order_reference=o.order_reference,
                period=_xml_date(o.period),
                contract_id=o.contract_id,
                d_prognosis_message_id=o.d_prognosis_message_id,
                baseline_reference=o.baseline_reference,
                congestion_point=o.congestion_point,
                price=_exact(o.price, 4, "Price"),
                penalty=_exact(o.penalty, 4, "Penalty"),
                net_settlement=_exact(o.net_settlement, 4, "NetSettlement"),
                isps=[
                    order_row(
                        start=i.start,
                        duration=i.duration,
                        baseline_power=i.baseline_power,
                        ordered_flex_power=i.ordered_flex_power,
                        actual_power=i.actual_power,
                        delivered_flex_power=i.delivered_flex_power,
                        power_deficiency=i.power_deficiency,
                    )
                    for i in o.isps
                ],
            )
            for o in m.flex_order_settlements
        ],
        "contract_settlements": [
            ss.ContractSettlement(
                contract_id=c.contract_id,
                periods=[
                    ss.ContractSettlementPeriod(
                        period=_xml_date(p.period),
                        isps=[
                            contract_row(
                                start=i.start,
                                duration=i.duration,
                                reserved_power=i.reserved_power,
                                requested_power=i.requested_power,
                                available_power=i.available_power,
                                offered_power=i.offered_power,
                                ordered_power=i.ordered_power,
                            )
                            for i in p.isps
                        ],
                    )
                    for p in c.periods
                ],
            )
            for c in m.contract_settlements
        ],
    }


def _flex_settlement_response_to(m: FlexSettlementResponse) -> dict[str, Any]:
    row = ss.FlexOrderSettlementStatus
    return {
        "flex_order_settlement_statuses": [
            row(
                order_reference=s.order_reference,
                disposition=_member(_VERDICT_TO, s.disposition, "Disposition"),
                dispute_reason=s.dispute_reason,
            )
            for s in m.flex_order_settlement_statuses
        ]
    }


def _metering_to(m: Metering) -> dict[str, Any]:
    row = ss.MeteringISP
    return {
        "revision": m.revision,
        "isp_duration": _duration_to(m.isp_duration),
        "time_zone": m.time_zone,
        "currency": m.currency,
        "period": _xml_date(m.period),
        "ean": m.ean,
        "profiles": [
            ss.MeteringProfile(
                profile_type=_member(_PROFILE_TO, p.profile_type, "ProfileType"),
                unit=_member(_UNIT_TO, p.unit, "Unit"),
                isps=[row(start=i.start, value=i.value) for i in p.isps],
            )
            for p in m.profiles
        ],
    }


def _flex_reservation_update_to(m: FlexReservationUpdate) -> dict[str, Any]:
    row = ss.FlexReservationUpdateISP
    return {
        **_flex_to(m),
        "contract_id": m.contract_id,
        "reference": m.reference,
        "isps": [row(power=i.power, start=i.start, duration=i.duration) for i in m.isps],
    }


# --- message bodies: theirs -> fields of ours -----------------------------------------------


def _dso_update_from(obj: Any) -> dict[str, Any]:
    row = DSOPortfolioUpdateConnection
    return {
        "time_zone": obj.time_zone,
        "congestion_points": tuple(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=cp.entity_address,
                start_period=_date_from(cp.start_period),
                end_period=_opt(_date_from, cp.end_period),
                mutex_offers_supported=_bool_from(cp.mutex_offers_supported),
                day_ahead_redispatch_by=_redispatch_from(cp.day_ahead_redispatch_by),
                intraday_redispatch_by=_opt(_redispatch_from, cp.intraday_redispatch_by),
                connections=tuple(
                    [
                        row(
                            c.entity_address,
                            _date_from(c.start_period),
                            _opt(_date_from, c.end_period),
                        )
                        for c in cp.connections
                    ]
                ),
            )
            for cp in obj.congestion_points
        ),
    }


def _dso_query_from(obj: Any) -> dict[str, Any]:
    return {
        "time_zone": obj.time_zone,
        "period": _date_from(obj.period),
        "entity_address": obj.entity_address,
    }


def _dso_query_point_from(cp: Any) -> DSOPortfolioQueryCongestionPoint:
    return DSOPortfolioQueryCongestionPoint(
        entity_address=cp.entity_address,
        connections=tuple(
            DSOPortfolioQueryConnection(c.entity_address, c.agr_domain) for c in cp.connections
        ),
    )


def _dso_query_response_from(obj: Any) -> dict[str, Any]:
    return {
        "time_zone": obj.time_zone,
        "period": _date_from(obj.period),
        "congestion_point": _opt(_dso_query_point_from, obj.congestion_point),
    }


def _agr_update_from(obj: Any) -> dict[str, Any]:
    row = AGRPortfolioUpdateConnection
    return {
        "time_zone": obj.time_zone,
        "connections": tuple(
            [
                row(c.entity_address, _date_from(c.start_period), _opt(_date_from, c.end_period))
                for c in obj.connections
            ]
        ),
    }


def _agr_query_from(obj: Any) -> dict[str, Any]:
    return {"time_zone": obj.time_zone, "period": _date_from(obj.period)}


def _agr_rows_from(connections: list[Any]) -> tuple[AGRPortfolioQueryConnection, ...]:
    return tuple(AGRPortfolioQueryConnection(c.entity_address) for c in connections)


def _agr_view_from(view: Any) -> AGRPortfolioQueryDSOView:
    return AGRPortfolioQueryDSOView(
        dso_portfolios=tuple(
            AGRPortfolioQueryDSOPortfolio(
                dso_domain=portfolio.dso_domain,
                congestion_points=tuple(
                    AGRPortfolioQueryCongestionPoint(
                        entity_address=cp.entity_address,
                        mutex_offers_supported=_bool_from(cp.mutex_offers_supported),
                        day_ahead_redispatch_by=_redispatch_from(cp.day_ahead_redispatch_by),
                        intraday_redispatch_by=_opt(_redispatch_from, cp.intraday_redispatch_by),
                        connections=_agr_rows_from(cp.connections),
                    )
                    for cp in portfolio.congestion_points
                ),
            )
            for portfolio in view.dso_portfolios
        ),
        connections=_agr_rows_from(view.connections),
    )


def _agr_query_response_from(obj: Any) -> dict[str, Any]:
    return {
        "time_zone": obj.time_zone,
        "period": _date_from(obj.period),
        "dso_views": tuple(_agr_view_from(view) for view in obj.dso_views),
    }


def _flex_from(obj: Any) -> dict[str, Any]:
    return {
        "isp_duration": _duration_from(obj.isp_duration),
        "time_zone": obj.time_zone,
        "period": _date_from(obj.period),
        "congestion_point": obj.congestion_point,
    }


def _flex_request_from(obj: Any) -> dict[str, Any]:
    return {
        **_flex_from(obj),
        "revision": obj.revision,
        "expiration_date_time": _stamp_from(obj.expiration_date_time),
        "contract_id": obj.contract_id,
        "service_type": obj.service_type,
        "isps": tuple(
            [
                FlexRequestISP(
                    isp.start,
                    isp.min_power,
                    isp.max_power,
                    isp.duration,
                    _opt(_disposition_from, isp.disposition),
                )
                for isp in obj.isps
            ]
        ),
    }


def _disposition_from(value: Any) -> AvailableRequested:
    return _member(_DISPOSITION_FROM, value, "Disposition")


def _flex_offer_from(obj: Any) -> dict[str, Any]:
    return {
        **_flex_from(obj),
        "expiration_date_time": _stamp_from(obj.expiration_date_time),
        "unsolicited": _opt_bool_from(obj.unsolicited, "Unsolicited"),
        "flex_request_message_id": obj.flex_request_message_id,
        "contract_id": obj.contract_id,
        "d_prognosis_message_id": obj.d_prognosis_message_id,
        "baseline_reference": obj.baseline_reference,
        "currency": obj.currency,
        "offer_options": tuple(
            FlexOfferOption(
                option_reference=option.option_reference,
                price=_decimal_from(option.price),
                min_activation_factor=_decimal_from(option.min_activation_factor),
                isps=tuple(
                    [FlexOfferOptionISP(isp.start, isp.power, isp.duration) for isp in option.isps]
                ),
            )
            for option in obj.offer_options
        ),
    }


def _flex_offer_revocation_from(obj: Any) -> dict[str, Any]:
    return {"flex_offer_message_id": obj.flex_offer_message_id}


def _flex_order_from(obj: Any) -> dict[str, Any]:
    return {
        **_flex_from(obj),
        "unsolicited": _opt_bool_from(obj.unsolicited, "Unsolicited"),
        "flex_offer_message_id": obj.flex_offer_message_id,
        "service_type": obj.service_type,
        "contract_id": obj.contract_id,
        "d_prognosis_message_id": obj.d_prognosis_message_id,
        "baseline_reference": obj.baseline_reference,
        "price": _decimal_from(obj.price),
        "currency": obj.currency,
        "order_reference": obj.order_reference,
        "option_reference": obj.option_reference,
        "activation_factor": _decimal_from(obj.activation_factor),
        "isps": tuple([FlexOrderISP(i.start, i.power, i.duration) for i in obj.isps]),
    }


def _d_prognosis_from(obj: Any) -> dict[str, Any]:
    return {
        **_flex_from(obj),
        "revision": obj.revision,
        "isps": tuple([DPrognosisISP(i.start, i.power, i.duration) for i in obj.isps]),
    }


def _d_prognosis_response_from(obj: Any) -> dict[str, Any]:
    return {
        "flex_order_statuses": tuple(
            FlexOrderStatus(s.flex_order_message_id, _bool_from(s.is_validated, "IsValidated"))
            for s in obj.flex_order_statuses
        )
    }


def _flex_settlement_from(obj: Any) -> dict[str, Any]:
    return {
        "result": _member(_RESULT_FROM, obj.result, "Result"),
        "rejection_reason": obj.rejection_reason,
        "period_start": _date_from(obj.period_start),
        "period_end": _date_from(obj.period_end),
        "currency": obj.currency,
        "flex_order_settlements": tuple(
            FlexOrderSettlement(
                order_reference=o.order_reference,
                period=_date_from(o.period),
                contract_id=o.contract_id,
                d_prognosis_message_id=o.d_prognosis_message_id,
                baseline_reference=o.baseline_reference,
                congestion_point=o.congestion_point,
                price=_decimal_from(o.price),
                penalty=_decimal_from(o.penalty),
                net_settlement=_decimal_from(o.net_settlement),
                isps=tuple(
                    [
                        FlexOrderSettlementISP(
                            i.start,
                            i.baseline_power,
                            i.ordered_flex_power,
                            i.actual_power,
                            i.delivered_flex_power,
                            i.duration,
                            i.power_deficiency,
                        )
                        for i in o.isps
                    ]
                ),
            )
            for o in obj.flex_order_settlements
        ),
        "contract_settlements": tuple(
            ContractSettlement(
                contract_id=c.contract_id,
                periods=tuple(
                    ContractSettlementPeriod(
                        period=_date_from(p.period),
                        isps=tuple(
                            [
                                ContractSettlementISP(
                                    i.start,
                                    i.reserved_power,
                                    i.duration,
                                    i.requested_power,
                                    i.available_power,
                                    i.offered_power,
                                    i.ordered_power,
                                )
                                for i in p.isps
                            ]
                        ),
                    )
                    for p in c.periods
                ),
            )
            for c in obj.contract_settlements
        ),
    }


def _flex_settlement_response_from(obj: Any) -> dict[str, Any]:
    return {
        "flex_order_settlement_statuses": tuple(
            FlexOrderSettlementStatus(
                s.order_reference,
                _member(_VERDICT_FROM, s.disposition, "Disposition"),
                s.dispute_reason,
            )
            for s in obj.flex_order_settlement_statuses
        )
    }


def _metering_from(obj: Any) -> dict[str, Any]:
    return {
        "revision": obj.revision,
        "isp_duration": _duration_from(obj.isp_duration),
        "time_zone": obj.time_zone,
        "currency": obj.currency,
        "period": _date_from(obj.period),
        "ean": obj.ean,
        "profiles": tuple(
            MeteringProfile(
                profile_type=_member(_PROFILE_FROM, p.profile_type, "ProfileType"),
                unit=_member(_UNIT_FROM, p.unit, "Unit"),
                isps=tuple([MeteringISP(i.start, _decimal_from(i.value)) for i in p.isps]),
            )
            for p in obj.profiles
        ),
    }


def _flex_reservation_update_from(obj: Any) -> dict[str, Any]:
    return {
        **_flex_from(obj),
        "contract_id": obj.contract_id,
        "reference": obj.reference,
        "isps": tuple([FlexReservationUpdateISP(i.start, i.power, i.duration) for i in obj.isps]),
    }


# --- dispatch -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pair:
    """One message type on both sides, and how its body converts each way."""

    ours: type[PayloadMessage]
    theirs: type[Any]
    to_body: Callable[[Any], dict[str, Any]]
    from_body: Callable[[Any], dict[str, Any]]
    #: Their field holding a response's reference (None: no such field, or not a response).
    reference: str | None = None


_PAIRS = (
    _Pair(TestMessage, ss.TestMessage, _no_body, _no_body),
    _Pair(TestMessageResponse, ss.TestMessageResponse, _no_body, _no_body),
    _Pair(DSOPortfolioUpdate, ss.DsoPortfolioUpdate, _dso_update_to, _dso_update_from),
    _Pair(
        DSOPortfolioUpdateResponse,
        ss.DsoPortfolioUpdateResponse,
        _no_body,
        _no_body,
        "dso_portfolio_update_message_id",
    ),
    _Pair(DSOPortfolioQuery, ss.DsoPortfolioQuery, _dso_query_to, _dso_query_from),
    _Pair(
        DSOPortfolioQueryResponse,
        ss.DsoPortfolioQueryResponse,
        _dso_query_response_to,
        _dso_query_response_from,
        "dso_portfolio_query_message_id",
    ),
    _Pair(AGRPortfolioUpdate, ss.AgrPortfolioUpdate, _agr_update_to, _agr_update_from),
    _Pair(
        AGRPortfolioUpdateResponse,
        ss.AgrPortfolioUpdateResponse,
        _no_body,
        _no_body,
        "agr_portfolio_update_message_id",
    ),
    _Pair(AGRPortfolioQuery, ss.AgrPortfolioQuery, _agr_query_to, _agr_query_from),
    _Pair(
        AGRPortfolioQueryResponse,
        ss.AgrPortfolioQueryResponse,
        _agr_query_response_to,
        _agr_query_response_from,
        "agr_portfolio_query_message_id",
    ),
    _Pair(FlexRequest, ss.FlexRequest, _flex_request_to, _flex_request_from),
    _Pair(
        FlexRequestResponse,
        ss.FlexRequestResponse,
        _no_body,
        _no_body,
        "flex_request_message_id",
    ),
    _Pair(FlexOffer, ss.FlexOffer, _flex_offer_to, _flex_offer_from),
    _Pair(FlexOfferResponse, ss.FlexOfferResponse, _no_body, _no_body, "flex_offer_message_id"),
    _Pair(
        FlexOfferRevocation,
        ss.FlexOfferRevocation,
        _flex_offer_revocation_to,
        _flex_offer_revocation_from,
    ),
    _Pair(
        FlexOfferRevocationResponse,
        ss.FlexOfferRevocationResponse,
        _no_body,
        _no_body,
        "flex_offer_revocation_message_id",
    ),
    _Pair(FlexOrder, ss.FlexOrder, _flex_order_to, _flex_order_from),
    _Pair(FlexOrderResponse, ss.FlexOrderResponse, _no_body, _no_body, "flex_order_message_id"),
    _Pair(
        FlexReservationUpdate,
        ss.FlexReservationUpdate,
        _flex_reservation_update_to,
        _flex_reservation_update_from,
    ),
    _Pair(
        FlexReservationUpdateResponse,
        ss.FlexReservationUpdateResponse,
        _no_body,
        _no_body,
        "flex_reservation_update_message_id",
    ),
    _Pair(DPrognosis, ss.DPrognosis, _d_prognosis_to, _d_prognosis_from),
    _Pair(
        DPrognosisResponse,
        ss.DPrognosisResponse,
        _d_prognosis_response_to,
        _d_prognosis_response_from,
        "d_prognosis_message_id",
    ),
    _Pair(FlexSettlement, ss.FlexSettlement, _flex_settlement_to, _flex_settlement_from),
    _Pair(
        FlexSettlementResponse,
        ss.FlexSettlementResponse,
        _flex_settlement_response_to,
        _flex_settlement_response_from,
        "flex_settlement_message_id",
    ),
    _Pair(Metering, ss.Metering, _metering_to, _metering_from),
    _Pair(MeteringResponse, ss.MeteringResponse, _no_body, _no_body, "metering_message_id"),
)
_BY_OURS: dict[type[PayloadMessage], _Pair] = {pair.ours: pair for pair in _PAIRS}
_BY_THEIRS: dict[type[Any], _Pair] = {pair.theirs: pair for pair in _PAIRS}


def to_shapeshifter(message: PayloadMessage) -> ss.PayloadMessage:
    """The shapeshifter-uftp dataclass equal, field for field, to `message`.

    Raises `TypeError` for a type without counterpart and `ValueError` when a value has no
    place on their side (see the module docstring).
    """
    pair = _BY_OURS.get(type(message))
    if pair is None:
        raise TypeError(f"{type(message).__name__} has no shapeshifter-uftp counterpart here")
    kwargs = _metadata_to(message)
    if isinstance(message, PayloadResponse):
        kwargs.update(_response_to(message, pair.reference))
    kwargs.update(pair.to_body(message))
    return pair.theirs(**kwargs)


def from_shapeshifter(obj: ss.PayloadMessage, *, version: str | None = None) -> PayloadMessage:
    """Our model of shapeshifter-uftp message `obj`, field for field.

    `version`, when given, replaces the object's Version: their dataclasses default to 3.1.0
    whatever the code that built them meant, and this is where a caller says otherwise.
    Raises `TypeError` for a type this adapter does not handle and `ValueError` (or
    `TypeError`) for a value our model cannot hold, e.g. text where a bool belongs.
    """
    pair = _BY_THEIRS.get(type(obj))
    if pair is None:
        raise TypeError(f"{type(obj).__name__} is not a message type this adapter handles")
    fields = _metadata_from(obj, version)
    if issubclass(pair.ours, PayloadResponse):
        fields.update(_response_from(obj, pair.reference))
    fields.update(pair.from_body(obj))
    return pair.ours(**fields)
