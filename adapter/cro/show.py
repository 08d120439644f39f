"""The register for an operator: what `uftp-adapter cro show` prints.

Congestion points with their owning DSO, periods, flags and connection counts - never a
connection's EntityAddress, which identifies a household (personal data) and which an
operator looking at the register's shape does not need. Optionally the history: every
accepted update, oldest first.

A congestion point's EntityAddress is the DSO's text: the schema allows any character after
its prefix, U+202E (which reverses what follows on a terminal) and U+2028 or U+0085 (new lines
in some) among them. The text form prints it escaped (`adapter.printable`); the JSON form
escapes every character outside ASCII anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adapter.assemble import new_store
from adapter.config import Config
from adapter.printable import printable
from adapter.store import register_for
from adapter.store.register import PointSummary, UpdateSummary

__all__ = ["RegisterReport", "end_of_day", "read_report", "render_json", "render_text"]


@dataclass(frozen=True, slots=True)
class RegisterReport:
    cro_domain: str
    #: None: the register as it stands now.
    as_of: datetime | None
    points: list[PointSummary]
    #: None when the history was not asked for.
    updates: list[UpdateSummary] | None


def end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The last instant of `day` in the market's time zone: "as of D" includes all of D."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone) - timedelta(
        microseconds=1
    )


async def read_report(
    config: Config,
    *,
    dso: str | None = None,
    as_of: datetime | None = None,
    history: bool = False,
    store: Any = None,
) -> RegisterReport:
    """Read the register from `store` (opened), or from the configured store, opened and
    closed for the purpose - without taking it (`exclusive=False`): the CRO may be running
    on it, and a SQLite store admits one participant."""
    own = store is None
    if own:
        store = new_store(config.participant, exclusive=False)
        await store.open()
    try:
        register = register_for(store)
        points = await register.congestion_points(dso_domain=dso, as_of=as_of)
        updates = await register.updates(sender_domain=dso) if history else None
    finally:
        if own:
            await store.close()
    if updates is not None and as_of is not None:
        updates = [update for update in updates if update.recorded_at <= as_of]
    return RegisterReport(config.participant.domain, as_of, points, updates)


def _period(point: PointSummary) -> str:
    end = point.end_period.isoformat() if point.end_period else "open"
    return f"{point.start_period.isoformat()}..{end}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _instant(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def render_text(report: RegisterReport) -> str:
    when = "now" if report.as_of is None else f"as of {_instant(report.as_of)}"
    dsos = sorted({point.dso_domain for point in report.points})
    total = sum(point.connections for point in report.points)
    lines = [
        f"Common Reference register of {report.cro_domain}, {when}",
        f"{_count(len(report.points), 'congestion point')} of {_count(len(dsos), 'DSO')}, "
        f"{_count(total, 'connection')}",
    ]
    addresses = {point.entity_address: printable(point.entity_address) for point in report.points}
    width = max(map(len, addresses.values()), default=16)
    for dso in dsos:
        points = [point for point in report.points if point.dso_domain == dso]
        count = sum(point.connections for point in points)
        lines += [
            "",
            f"DSO {dso}: {_count(len(points), 'congestion point')}, {_count(count, 'connection')}",
            f"  {'CONGESTION POINT':<{width}}  {'PERIOD':<22}  {'CONNECTIONS':>11}  MUTEX  "
            "DAY-AHEAD  INTRADAY  LAST DEFINED (MessageID)",
        ]
        for point in points:
            lines.append(
                f"  {addresses[point.entity_address]:<{width}}  {_period(point):<22}  "
                f"{point.connections:>11}  {'yes' if point.mutex_offers_supported else 'no':<5}  "
                f"{point.day_ahead_redispatch_by.value:<9}  "
                f"{point.intraday_redispatch_by.value if point.intraday_redispatch_by else '-':<8}"
                f"  {_instant(point.recorded_at)} ({point.message_id})"
            )
    if report.updates is not None:
        lines += ["", f"Accepted updates ({len(report.updates)}), oldest first:"]
        lines += [
            f"  #{u.seq:<5} {_instant(u.recorded_at)}  {u.kind.value.upper()} {u.sender_domain} "
            f"{u.message_id} (TimeStamp {_instant(u.time_stamp)})"
            for u in report.updates
        ]
    return "\n".join(lines) + "\n"


def render_json(report: RegisterReport) -> str:
    data: dict[str, Any] = {
        "cro": report.cro_domain,
        "as_of": None if report.as_of is None else report.as_of.isoformat(),
        "congestion_points": [
            {
                "entity_address": point.entity_address,
                "dso_domain": point.dso_domain,
                "start_period": point.start_period.isoformat(),
                "end_period": point.end_period.isoformat() if point.end_period else None,
                "mutex_offers_supported": point.mutex_offers_supported,
                "day_ahead_redispatch_by": point.day_ahead_redispatch_by.value,
                "intraday_redispatch_by": (
                    point.intraday_redispatch_by.value if point.intraday_redispatch_by else None
                ),
                "connections": point.connections,
                "message_id": point.message_id,
                "recorded_at": point.recorded_at.isoformat(),
            }
            for point in report.points
        ],
    }
    if report.updates is not None:
        data["updates"] = [
            {
                "seq": u.seq,
                "kind": u.kind.value,
                "sender_domain": u.sender_domain,
                "message_id": u.message_id,
                "time_stamp": u.time_stamp.isoformat(),
                "recorded_at": u.recorded_at.isoformat(),
            }
            for u in report.updates
        ]
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"  # U+202E and the like escaped
