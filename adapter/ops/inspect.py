"""The operator's commands on a participant's store: `outbox`, `inbox` and `status`.

Reading is safe while the participant runs: a SQLite store is opened read-only beside its
`serve` (`admin_sqlite.read_only`: no write, no lock of the owner's), a PostgreSQL one through
its pool as any process of the participant. `outbox retry` and `outbox cancel` write through
the store, as the running participant does; how a running `serve` learns of them is said in
`adapter.ops.retention` (the outbox scan) and in `adapter.outbox` (a retry re-reads the status).

The operator asked for identifiers on their own terminal, so they are printed; what a peer
chose (its MessageIDs, a refusal's text, an error quoting its answer) is escaped
(`adapter.printable`) in the text form, and the JSON form escapes every character outside
ASCII.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from adapter import assemble
from adapter.config import Config, SqliteStoreSettings
from adapter.printable import printable, printable_once
from adapter.store import admin_for
from adapter.store.admin import (
    InboundSummary,
    OutboundSummary,
    StoreAdmin,
    StoreStatus,
)
from adapter.store.base import DeliveryAttempt, Store
from adapter.uftp import envelope
from adapter.uftp.errors import UftpError

__all__ = [
    "InboundDetail",
    "OutboundDetail",
    "inner_xml",
    "parse_since",
    "reading",
    "render_inbound",
    "render_inbound_list",
    "render_outbound",
    "render_outbound_list",
    "render_status",
    "writing",
]

#: How much of an error text a table shows (`show` prints it whole).
ERROR_SHOWN = 60

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@contextlib.asynccontextmanager
async def reading(config: Config) -> AsyncIterator[StoreAdmin]:
    """The operator's view of the configured store, for reading only."""
    settings = config.participant.store
    if isinstance(settings, SqliteStoreSettings):
        from adapter.store.admin_sqlite import read_only

        async with read_only(settings.path) as admin:
            yield admin
        return
    store = assemble.new_store(config.participant, exclusive=False)
    await store.open()
    try:
        yield admin_for(store)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def writing(config: Config) -> AsyncIterator[tuple[Store, StoreAdmin]]:
    """The configured store, opened as the participant opens it, and the operator's view of
    it; a SQLite store must exist already (a typo in the path creates no empty store)."""
    settings = config.participant.store
    if isinstance(settings, SqliteStoreSettings) and not settings.path.is_file():
        from adapter.store.base import StoreOpenError

        raise StoreOpenError(
            f"{settings.path}: no SQLite store there: has the participant run yet?"
        )
    store = assemble.new_store(config.participant, exclusive=False)
    await store.open()
    try:
        yield store, admin_for(store)
    finally:
        await store.close()


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from `now` (90s, 30m, 12h, 7d), a day (YYYY-MM-DD, from its
    midnight UTC) or an ISO instant (UTC unless it says otherwise). ValueError otherwise."""
    duration = _DURATION.fullmatch(text.strip())
    if duration:
        return now - timedelta(seconds=int(duration[1]) * _UNITS[duration[2]])
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected a duration (90s, 30m, 12h, 7d), a day YYYY-MM-DD or an ISO instant, "
            f"got {text!r}"
        ) from None
    return instant if instant.utcoffset() is not None else instant.replace(tzinfo=UTC)


def inner_xml(sealed_envelope: bytes) -> str:
    """The UFTP message inside a stored SignedMessage, as text. An inbound one was verified
    before it was stored, an outbound one was sealed by us: nothing is verified here."""
    try:
        signed = envelope.parse_envelope(sealed_envelope)
    except UftpError as exc:
        return f"(the stored envelope cannot be read: {exc})"
    return signed.sealed[envelope.SIGNATURE_BYTES :].decode("utf-8", errors="replace")


# -- rendering ---------------------------------------------------------------------------------


def _instant(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _short(text: str | None, limit: int = ERROR_SHOWN) -> str:
    return "-" if not text else printable_once(" ".join(text.split()), limit)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"  # U+202E and the like escaped


def _inbound_data(row: InboundSummary) -> dict[str, Any]:
    return {
        "sender_domain": row.sender_domain,
        "message_id": row.message_id,
        "sender_role": row.sender_role,
        "message_type": row.message_type,
        "conversation_id": row.conversation_id,
        "version": row.version,
        "received_at": _iso(row.received_at),
        "status": row.status.value,
        "rejection": row.rejection,
        "envelope_bytes": row.envelope_bytes,
    }


def _outbound_data(row: OutboundSummary) -> dict[str, Any]:
    return {
        "message_id": row.message_id,
        "recipient_domain": row.recipient_domain,
        "recipient_role": row.recipient_role,
        "message_type": row.message_type,
        "conversation_id": row.conversation_id,
        "reference_message_id": row.reference_message_id,
        "endpoint": row.endpoint,
        "created_at": _iso(row.created_at),
        "deadline": _iso(row.deadline),
        "status": row.status.value,
        "attempts": row.attempts,
        "next_attempt_at": _iso(row.next_attempt_at),
        "last_error": row.last_error,
        "envelope_bytes": row.envelope_bytes,
    }


def render_inbound_list(rows: Sequence[InboundSummary], fmt: str = "text") -> str:
    if fmt == "json":
        return _json([_inbound_data(row) for row in rows])
    if not rows:
        return "no inbound messages match\n"
    table = _table(
        ("RECEIVED (UTC)", "FROM", "TYPE", "STATUS", "MESSAGE ID", "REJECTION"),
        [
            (
                _instant(row.received_at),
                f"{printable(row.sender_domain)} ({printable(row.sender_role)})",
                printable(row.message_type),
                row.status.value,
                printable(row.message_id),
                _short(row.rejection),
            )
            for row in rows
        ],
    )
    return "\n".join(table) + "\n"


def render_outbound_list(rows: Sequence[OutboundSummary], fmt: str = "text") -> str:
    if fmt == "json":
        return _json([_outbound_data(row) for row in rows])
    if not rows:
        return "no outbound messages match\n"
    table = _table(
        ("CREATED (UTC)", "TO", "TYPE", "STATUS", "ATTEMPTS", "MESSAGE ID", "LAST ERROR"),
        [
            (
                _instant(row.created_at),
                f"{printable(row.recipient_domain)} ({printable(row.recipient_role)})",
                printable(row.message_type),
                row.status.value,
                str(row.attempts),
                printable(row.message_id),
                _short(row.last_error),
            )
            for row in rows
        ],
    )
    return "\n".join(table) + "\n"


@dataclass(frozen=True, slots=True)
class OutboundDetail:
    message: OutboundSummary
    attempts: list[DeliveryAttempt]
    #: The message as sent, when asked for and still stored.
    xml: str | None = None


@dataclass(frozen=True, slots=True)
class InboundDetail:
    message: InboundSummary
    xml: str | None = None


def _fields(pairs: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in pairs)
    return [f"{name + ':':<{width + 1}} {value}" for name, value in pairs]


def _envelope_size(size: int) -> str:
    return f"{size} bytes" if size else "removed by retention"


def _xml_lines(xml: str) -> list[str]:
    # Line by line, so that the message keeps its shape while each line is escaped.
    return ["", *(printable(line) for line in xml.split("\n"))]


def render_outbound(detail: OutboundDetail, fmt: str = "text") -> str:
    row = detail.message
    if fmt == "json":
        data = _outbound_data(row)
        data["delivery_attempts"] = [
            {
                "attempted_at": _iso(a.attempted_at),
                "http_status": a.http_status,
                "outcome": a.outcome,
                "detail": a.detail,
            }
            for a in detail.attempts
        ]
        if detail.xml is not None:
            data["xml"] = detail.xml
        return _json(data)
    lines = _fields(
        [
            ("message", f"{printable(row.message_type)} {printable(row.message_id)}"),
            ("to", f"{printable(row.recipient_domain)} ({printable(row.recipient_role)})"),
            ("endpoint", printable(row.endpoint)),
            ("conversation", printable(row.conversation_id)),
            ("answers", printable(row.reference_message_id or "-")),
            ("status", row.status.value),
            ("created", f"{_instant(row.created_at)} UTC"),
            ("deadline", f"{_instant(row.deadline)} UTC"),
            ("next attempt", f"{_instant(row.next_attempt_at)}"),
            ("attempts", str(row.attempts)),
            ("last error", printable_once(row.last_error or "-")),
            ("envelope", _envelope_size(row.envelope_bytes)),
        ]
    )
    if detail.attempts:
        lines += ["", "delivery attempts, oldest first:"]
        lines += [
            "  " + line
            for line in _table(
                ("AT (UTC)", "HTTP", "OUTCOME", "DETAIL"),
                [
                    (
                        _instant(a.attempted_at),
                        "-" if a.http_status is None else str(a.http_status),
                        printable(a.outcome),
                        printable_once(a.detail or "-"),
                    )
                    for a in detail.attempts
                ],
            )
        ]
    if detail.xml is not None:
        lines += _xml_lines(detail.xml)
    return "\n".join(lines) + "\n"


def render_inbound(detail: InboundDetail, fmt: str = "text") -> str:
    row = detail.message
    if fmt == "json":
        data = _inbound_data(row)
        if detail.xml is not None:
            data["xml"] = detail.xml
        return _json(data)
    lines = _fields(
        [
            ("message", f"{printable(row.message_type)} {printable(row.message_id)}"),
            ("from", f"{printable(row.sender_domain)} ({printable(row.sender_role)})"),
            ("conversation", printable(row.conversation_id)),
            ("version", printable(row.version)),
            ("received", f"{_instant(row.received_at)} UTC"),
            ("status", row.status.value),
            ("rejection", printable(row.rejection or "-")),
            ("envelope", _envelope_size(row.envelope_bytes)),
        ]
    )
    if detail.xml is not None:
        lines += _xml_lines(detail.xml)
    return "\n".join(lines) + "\n"


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    if seconds < 120:
        return f"{_instant(value)} ({seconds} s ago)"
    if seconds < 7200:
        return f"{_instant(value)} ({seconds // 60} min ago)"
    if seconds < 2 * 86400:
        return f"{_instant(value)} ({seconds // 3600} h ago)"
    return f"{_instant(value)} ({seconds // 86400} days ago)"


def render_status(
    status: StoreStatus, config: Config, now: datetime, fmt: str = "text", *, store: str
) -> str:
    """The status of the store of `config`'s participant; `store` names the store.

    The peers are those configured and those the store has seen (a peer seen but no longer
    configured shows its role as '-')."""
    roles = {peer.domain: peer.role.value for peer in config.peers}
    seen = {peer.domain: peer for peer in status.peers}
    domains = sorted(set(roles) | set(seen))
    depths = status.depths
    if fmt == "json":
        return _json(
            {
                "participant": config.participant.domain,
                "role": config.participant.role.value,
                "store": store,
                "now": _iso(now),
                "outbound": {s.value: n for s, n in status.outbound.items()},
                "inbound": {s.value: n for s, n in status.inbound.items()},
                "oldest_pending_outbound": _iso(depths.oldest_pending_outbound),
                "oldest_unfinished_inbound": _iso(depths.oldest_unfinished_inbound),
                "failures_since": _iso(status.since),
                "failed_attempts": status.failed_attempts,
                "failed_messages": status.failed_messages,
                "peers": [
                    {
                        "domain": domain,
                        "role": roles.get(domain),
                        "configured": domain in roles,
                        "last_received": _iso(seen[domain].last_received)
                        if domain in seen
                        else None,
                        "last_delivered": (
                            _iso(seen[domain].last_delivered) if domain in seen else None
                        ),
                        "pending": seen[domain].pending if domain in seen else 0,
                        "failed_attempts": seen[domain].failed_attempts if domain in seen else 0,
                    }
                    for domain in domains
                ],
            }
        )
    out = ", ".join(f"{n} {s.value}" for s, n in status.outbound.items())
    into = ", ".join(
        f"{n} {'unfinished' if s.value == 'received' else s.value}"
        for s, n in status.inbound.items()
    )
    hours = (now - status.since).total_seconds() / 3600
    window = "the last hour" if round(hours, 3) == 1 else f"the last {hours:g} hours"
    lines = [
        f"{config.participant.role} {config.participant.domain}, store {store}",
        f"outbox: {out}",
        f"  oldest pending: {_ago(depths.oldest_pending_outbound, now)}",
        f"inbox:  {into}",
        f"  oldest unfinished: {_ago(depths.oldest_unfinished_inbound, now)}",
        f"failures in {window}: {status.failed_attempts} delivery attempts, "
        f"{status.failed_messages} messages failed for good",
    ]
    if domains:
        lines += ["", "peers:"]
        rows = []
        for domain in domains:
            peer = seen.get(domain)
            rows.append(
                (
                    printable(domain),
                    roles.get(domain, "-"),
                    _instant(peer.last_received) if peer else "-",
                    _instant(peer.last_delivered) if peer else "-",
                    str(peer.pending if peer else 0),
                    str(peer.failed_attempts if peer else 0),
                )
            )
        lines += [
            "  " + line
            for line in _table(
                (
                    "DOMAIN",
                    "ROLE",
                    "LAST RECEIVED (UTC)",
                    "LAST DELIVERED (UTC)",
                    "PENDING",
                    "FAILED (1 H)" if window == "the last hour" else "FAILED",
                ),
                rows,
            )
        ]
    return "\n".join(lines) + "\n"
