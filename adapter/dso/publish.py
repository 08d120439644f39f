"""The DSO talking to its CRO: publish the portfolio, ask which connections a congestion point
holds, and put the answers into words.

    async with participant_for(config) as dso:
        response = await publish(dso, load_portfolio("portfolio.csv"), to=single_cro(config))
        answer = await query(dso, "ea1.2026-01.test.uftp-demo:cp-north", date(2026, 3, 1),
                             to=single_cro(config))

Both await the CRO's response, which in UFTP arrives as a separate signed message
(message-transport-mechanism.md, "Awaiting reply"): the participant must be started, so that
its endpoint can receive it. Both raise what `Participant.request` raises (`DeliveryFailed`,
`ResponseTimeout`, `UnknownPeer`); a rejection is a response, not an exception.

Printing a query answer shows connection identifiers - personal data, shown to the DSO they
belong to, on request; nothing here logs them.
"""

from __future__ import annotations

import json
from datetime import date

from adapter.config import Config
from adapter.dso.portfolio import DEFAULT_TIME_ZONE, PortfolioRuleError, period_problems
from adapter.participant import Participant
from adapter.printable import printable
from adapter.uftp.messages import (
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
)

__all__ = [
    "cro_target",
    "describe_publish",
    "describe_query",
    "publish",
    "query",
    "query_json",
    "single_cro",
]


async def publish(
    participant: Participant,
    update: DSOPortfolioUpdate,
    *,
    to: str,
    timeout: float = 60.0,
    check: bool = True,
) -> DSOPortfolioUpdateResponse:
    """Send `update` to the CRO at `to` and return its DSOPortfolioUpdateResponse.

    With `check` (the default) the update first passes the CRO's own content rules
    (`period_problems`), and `PortfolioRuleError` is raised instead of sending one that the
    CRO would reject: the DSO learns of the mistake first. `load_portfolio` has checked a
    file's update already; the check matters for an update built in code.
    """
    if check:
        problems = period_problems(update)
        if problems:
            raise PortfolioRuleError(problems)
    return await participant.request(update, to=to, role=Role.CRO, timeout=timeout)


async def query(
    participant: Participant,
    congestion_point: str,
    period: date,
    *,
    to: str,
    time_zone: str = DEFAULT_TIME_ZONE,
    timeout: float = 60.0,
) -> DSOPortfolioQueryResponse:
    """Ask the CRO at `to` which connections `congestion_point` holds on `period`, and which
    aggregator represents each (spec: dso-portfolio-query.md)."""
    message = DSOPortfolioQuery(time_zone=time_zone, period=period, entity_address=congestion_point)
    return await participant.request(message, to=to, role=Role.CRO, timeout=timeout)


def single_cro(config: Config) -> str:
    """The domain of the one CRO among the configured peers: where a DSO publishes when it is
    not told. Raises `LookupError` when there is none, or more than one to choose from."""
    cros = [peer.domain for peer in config.peers if peer.role is Role.CRO and not peer.barred]
    if len(cros) == 1:
        return cros[0]
    if not cros:
        raise LookupError(f"{config.path}: no CRO among the [[peers]]")
    raise LookupError(f"{config.path}: several CROs among the [[peers]] ({', '.join(cros)})")


def cro_target(config: Config, to: str | None = None) -> str:
    """Where a DSO configuration publishes: `to`, else `single_cro`. Raises `LookupError`
    when `config` is not a DSO's (only a DSO publishes a DSO portfolio) or names no CRO."""
    if config.participant.role is not Role.DSO:
        raise LookupError(f"{config.path} configures a {config.participant.role}, not a DSO")
    return to or single_cro(config)


# --------------------------------------------------------------------------------------------
# The answers in words
# --------------------------------------------------------------------------------------------


def _reasons(response: PayloadResponse) -> list[str]:
    """The rejection reasons, one each: message-validation.md separates them with ';'."""
    text = response.rejection_reason or ""
    return [reason.strip() for reason in text.split(";") if reason.strip()]


def _head(response: PayloadResponse) -> str:
    by = f" by {response.sender_domain}" if response.sender_domain else ""
    return f"{response.xml_name} {response.result}{by}"


def describe_publish(response: PayloadResponse) -> str:
    """`... Accepted by cro`, or `... Rejected by cro:` and one reason per line."""
    if response.result is Result.ACCEPTED:
        return _head(response)
    reasons = (f"  {printable(r)}" for r in _reasons(response))
    return "\n".join([f"{_head(response)}:", *reasons])


def describe_query(response: PayloadResponse) -> str:
    """The answer to a DSOPortfolioQuery: its connections and their AGR-Domain, one a line
    ('-' for a connection no aggregator represents), or the reasons it was rejected."""
    if response.result is not Result.ACCEPTED or not isinstance(
        response, DSOPortfolioQueryResponse
    ):
        return describe_publish(response)
    point = response.congestion_point
    connections = point.connections if point is not None else ()
    address = point.entity_address if point is not None else "?"
    lines = [
        f"{_head(response)}: congestion point {address} on {response.period.isoformat()}, "
        f"{len(connections)} connection{'' if len(connections) == 1 else 's'}"
    ]
    width = max((len(c.entity_address) for c in connections), default=0)
    lines += [f"  {c.entity_address:<{width}}  {c.agr_domain or '-'}" for c in connections]
    return "\n".join(printable(line) for line in lines)  # the CRO wrote the addresses


def query_json(response: PayloadResponse) -> str:
    """The answer to a DSOPortfolioQuery as JSON, for scripts; agr_domain null where no
    aggregator represents the connection."""
    point = response.congestion_point if isinstance(response, DSOPortfolioQueryResponse) else None
    period = response.period if isinstance(response, DSOPortfolioQueryResponse) else None
    document = {
        "result": str(response.result),
        "rejection_reasons": _reasons(response),
        "cro": response.sender_domain or None,
        "period": period.isoformat() if period else None,
        "congestion_point": point.entity_address if point else None,
        "connections": [
            {"entity_address": c.entity_address, "agr_domain": c.agr_domain}
            for c in (point.connections if point else ())
        ],
    }
    return json.dumps(document, indent=2)
