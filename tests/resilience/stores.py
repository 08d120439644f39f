"""Reading a participant's SQLite file from outside: what it received, sent and applied.

Used by the DSO driver (on its own live store, for its progress lines), by the crash harness
(read-only, on a store whose process was just killed or has stopped) and by the invariant
checks. Everything is read from the tables the store writes, not from any process's memory:
what a store holds is what survives a crash.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from adapter.uftp import codec, envelope
from adapter.uftp.messages import PayloadResponse, Result

REQUEST_TYPE = "DSOPortfolioUpdate"
RESPONSE_TYPE = "DSOPortfolioUpdateResponse"


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a store file (WAL: a crashed writer's log is still read)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)


def response_of(sealed_envelope: bytes) -> PayloadResponse:
    """The response inside a stored SignedMessage (verified before it was stored)."""
    signed = envelope.parse_envelope(sealed_envelope)
    message = codec.decode(signed.sealed[envelope.SIGNATURE_BYTES :])
    if not isinstance(message, PayloadResponse):
        raise AssertionError(f"{message.xml_name} {message.message_id} is not a response")
    return message


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


@dataclass
class SenderView:
    """A DSO's store: its requests, their delivery, and the responses it stored."""

    #: request MessageID -> outbound status
    requests: dict[str, str] = field(default_factory=dict)
    #: delivery attempts per request MessageID
    attempts: Counter[str] = field(default_factory=Counter)
    #: stored inbound response MessageID -> (reference, result, inbound status)
    responses: dict[str, tuple[str, Result, str]] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        return sum(1 for status in self.requests.values() if status == "delivered")

    @property
    def pending(self) -> int:
        return sum(1 for status in self.requests.values() if status == "pending")

    def answers(self) -> Counter[str]:
        """How many stored responses reference each MessageID."""
        return Counter(reference for reference, _, _ in self.responses.values())


def read_sender(
    conn: sqlite3.Connection, known: dict[str, tuple[str, Result, str]] | None = None
) -> SenderView:
    """The DSO side; `known` caches decoded responses between calls (the driver polls)."""
    view = SenderView()
    for message_id, status in conn.execute(
        "SELECT message_id, status FROM outbound WHERE message_type = ?", (REQUEST_TYPE,)
    ):
        view.requests[message_id] = status
    for (message_id,) in conn.execute(
        "SELECT a.message_id FROM delivery_attempts AS a "
        "JOIN outbound AS o ON o.message_id = a.message_id WHERE o.message_type = ?",
        (REQUEST_TYPE,),
    ):
        view.attempts[message_id] += 1
    cache = known if known is not None else {}
    for message_id, status, blob in conn.execute(
        "SELECT i.message_id, i.status, CASE WHEN i.message_id IN "
        "(SELECT value FROM json_each(?)) THEN NULL ELSE e.envelope END "
        "FROM inbound AS i JOIN inbound_envelope AS e ON e.id = i.id "
        "WHERE i.message_type = ?",
        (_json_list(cache), RESPONSE_TYPE),
    ):
        if blob is not None:
            response = response_of(bytes(blob))
            cache[message_id] = (response.reference_message_id, response.result, status)
        reference, result, _ = cache[message_id]
        view.responses[message_id] = (reference, result, status)
    return view


def _json_list(items: dict[str, tuple[str, Result, str]]) -> str:
    return json.dumps(list(items))


@dataclass
class CroView:
    """The CRO's store: what it acknowledged, how far it got, what it applied and answered."""

    #: (sender, MessageID) -> inbound status, for the requests it stored (answered 200)
    inbound: dict[tuple[str, str], str] = field(default_factory=dict)
    #: response MessageID -> (reference, outbound status, delivery attempts)
    responses: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    #: (sender, MessageID) -> rows in the register's cro_update
    applied: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: congestion point EntityAddress -> number of versions (current or superseded)
    point_versions: Counter[str] = field(default_factory=Counter)
    #: connection rows in the register, and the connections its current versions count
    connection_rows: int = 0
    current_connections: int = 0

    @property
    def handled(self) -> int:
        return sum(1 for status in self.inbound.values() if status == "handled")

    @property
    def unfinished(self) -> int:
        return sum(1 for status in self.inbound.values() if status == "received")

    def answers(self) -> Counter[str]:
        return Counter(reference for reference, _, _ in self.responses.values())

    def applied_unfinished(self) -> int:
        """Requests applied to the register whose handling was not marked finished."""
        return sum(
            1 for key, status in self.inbound.items() if status == "received" and self.applied[key]
        )


def read_cro(conn: sqlite3.Connection) -> CroView:
    view = CroView()
    for sender, message_id, status in conn.execute(
        "SELECT sender_domain, message_id, status FROM inbound WHERE message_type = ?",
        (REQUEST_TYPE,),
    ):
        view.inbound[(sender, message_id)] = status
    for message_id, reference, status, attempts in conn.execute(
        "SELECT message_id, reference_message_id, status, attempts FROM outbound "
        "WHERE message_type = ?",
        (RESPONSE_TYPE,),
    ):
        view.responses[message_id] = (reference, status, attempts)
    if has_table(conn, "cro_update"):
        for sender, message_id, count in conn.execute(
            "SELECT sender_domain, message_id, count(*) FROM cro_update "
            "WHERE kind = 'dso' GROUP BY sender_domain, message_id"
        ):
            view.applied[(sender, message_id)] = count
        for address, count in conn.execute(
            "SELECT entity_address, count(*) FROM cro_congestion_point GROUP BY entity_address"
        ):
            view.point_versions[address] = count
        (view.connection_rows,) = conn.execute("SELECT count(*) FROM cro_connection").fetchone()
        (current,) = conn.execute(
            "SELECT coalesce(sum(connections), 0) FROM cro_congestion_point "
            "WHERE superseded_by IS NULL"
        ).fetchone()
        view.current_connections = int(current)
    return view


def read_cro_response_results(conn: sqlite3.Connection) -> dict[str, Result]:
    """The Result of every response the CRO queued, by the request it references."""
    results: dict[str, Result] = {}
    for (blob,) in conn.execute(
        "SELECT e.envelope FROM outbound AS o JOIN outbound_envelope AS e "
        "ON e.id = o.id WHERE o.message_type = ?",
        (RESPONSE_TYPE,),
    ):
        response = response_of(bytes(blob))
        results[response.reference_message_id] = response.result
    return results
