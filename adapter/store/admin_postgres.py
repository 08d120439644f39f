"""The operator's view of a PostgreSQL store (`admin.StoreAdmin`), on `PostgresStore.run`.

Envelopes live in the message rows here (`postgres.py`), so retention removes one by writing
an empty envelope in its place (a real SignedMessage is never empty): the row stays, and its
TOASTed value is freed by the next vacuum. Each batch of a prune is a transaction of its own,
so that other processes on the same schema wait for a row at most one batch long.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapter.store.admin import (
    PRUNE_BATCH,
    InboundSummary,
    MessageQuery,
    OutboundSummary,
    PeerActivity,
    Pruned,
    QueueDepths,
    Requeued,
    StoreStatus,
)
from adapter.store.base import DeliveryAttempt, InboundStatus, OutboundStatus
from adapter.store.postgres import PostgresStore

__all__ = ["PostgresAdmin"]

_PENDING = OutboundStatus.PENDING.value
_HANDLED = InboundStatus.HANDLED.value


def _where(query: MessageQuery, *, peer: str, created: str) -> tuple[str, list[Any]]:
    """The WHERE clause of a listing and its arguments ($1 is the limit)."""
    clauses: list[str] = []
    args: list[Any] = [query.limit]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if query.peer is not None:
        clauses.append(f"{peer} = {arg(query.peer)}")
    if query.message_type is not None:
        clauses.append(f"message_type = {arg(query.message_type)}")
    if query.status is not None:
        clauses.append(f"status = {arg(query.status)}")
    if query.since is not None:
        clauses.append(f"{created} >= {arg(query.since)}")
    if query.message_id is not None:
        clauses.append(f"message_id = {arg(query.message_id)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


class PostgresAdmin:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def inbound(self, query: MessageQuery) -> list[InboundSummary]:
        where, args = _where(query, peer="sender_domain", created="received_at")

        async def op(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                "SELECT sender_domain, message_id, sender_role, message_type, conversation_id, "  # noqa: S608 - the WHERE clause holds placeholders only
                "version, received_at, status, rejection, octet_length(envelope) AS size "
                f"FROM inbound{where} "
                "ORDER BY received_at DESC, sender_domain, message_id LIMIT $1",
                *args,
            )
            return rows

        return [
            InboundSummary(
                sender_domain=row["sender_domain"],
                message_id=row["message_id"],
                sender_role=row["sender_role"],
                message_type=row["message_type"],
                conversation_id=row["conversation_id"],
                version=row["version"],
                received_at=row["received_at"],
                status=InboundStatus(row["status"]),
                rejection=row["rejection"],
                envelope_bytes=row["size"],
            )
            for row in await self._store.run(op)
        ]

    async def outbound(self, query: MessageQuery) -> list[OutboundSummary]:
        where, args = _where(query, peer="recipient_domain", created="created_at")

        async def op(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(
                "SELECT message_id, recipient_domain, recipient_role, message_type, "  # noqa: S608 - the WHERE clause holds placeholders only
                "conversation_id, reference_message_id, endpoint, created_at, deadline, "
                "status, attempts, next_attempt_at, last_error, "
                "octet_length(envelope) AS size "
                f"FROM outbound{where} "
                "ORDER BY created_at DESC, message_id LIMIT $1",
                *args,
            )
            return rows

        return [
            OutboundSummary(
                message_id=row["message_id"],
                recipient_domain=row["recipient_domain"],
                recipient_role=row["recipient_role"],
                message_type=row["message_type"],
                conversation_id=row["conversation_id"],
                reference_message_id=row["reference_message_id"],
                endpoint=row["endpoint"],
                created_at=row["created_at"],
                deadline=row["deadline"],
                status=OutboundStatus(row["status"]),
                attempts=row["attempts"],
                next_attempt_at=row["next_attempt_at"],
                last_error=row["last_error"],
                envelope_bytes=row["size"],
            )
            for row in await self._store.run(op)
        ]

    async def inbound_envelope(self, sender_domain: str, message_id: str) -> bytes | None:
        async def op(conn: Any) -> Any:
            return await conn.fetchval(
                "SELECT envelope FROM inbound WHERE sender_domain = $1 AND message_id = $2",
                sender_domain,
                message_id,
            )

        found = await self._store.run(op)
        return bytes(found) if found else None

    async def outbound_envelope(self, message_id: str) -> bytes | None:
        async def op(conn: Any) -> Any:
            return await conn.fetchval(
                "SELECT envelope FROM outbound WHERE message_id = $1", message_id
            )

        found = await self._store.run(op)
        return bytes(found) if found else None

    async def attempts(self, message_id: str) -> list[DeliveryAttempt]:
        return await self._store.attempts(message_id)

    async def requeue(self, message_id: str, *, now: datetime, deadline: datetime) -> Requeued:
        if now.utcoffset() is None or deadline.utcoffset() is None:
            raise ValueError("requeue needs aware datetimes")

        async def op(conn: Any) -> Requeued:
            # FOR UPDATE: a concurrent attempt's report (which changes only a pending row)
            # and this decision are ordered.
            row = await conn.fetchrow(
                "SELECT status, octet_length(envelope) > 0 AS has_envelope FROM outbound "
                "WHERE message_id = $1 FOR UPDATE",
                message_id,
            )
            if row is None:
                raise LookupError(f"no outbound message {message_id!r}")
            status = OutboundStatus(row["status"])
            if status is OutboundStatus.PENDING:
                return Requeued.PENDING
            if status is OutboundStatus.DELIVERED:
                return Requeued.DELIVERED
            if not row["has_envelope"]:
                return Requeued.NO_ENVELOPE
            await conn.execute(
                "UPDATE outbound SET status = $1, next_attempt_at = $2, deadline = $3 "
                "WHERE message_id = $4",
                _PENDING,
                now,
                deadline,
                message_id,
            )
            return Requeued.REQUEUED

        return await self._store.run(op)

    async def depths(self) -> QueueDepths:
        return await self._store.run(_depths)

    async def status(self, since: datetime) -> StoreStatus:
        async def op(conn: Any) -> StoreStatus:
            inbound = dict.fromkeys(InboundStatus, 0)
            for row in await conn.fetch("SELECT status, count(*) FROM inbound GROUP BY status"):
                inbound[InboundStatus(row[0])] = row[1]
            outbound = dict.fromkeys(OutboundStatus, 0)
            for row in await conn.fetch("SELECT status, count(*) FROM outbound GROUP BY status"):
                outbound[OutboundStatus(row[0])] = row[1]
            failed_attempts = await conn.fetchval(
                "SELECT count(*) FROM delivery_attempts "
                "WHERE attempted_at >= $1 AND outcome <> 'delivered'",
                since,
            )
            failed_messages = await conn.fetchval(
                "SELECT count(*) FROM outbound AS m WHERE m.status IN ('failed', 'expired') "
                "AND EXISTS (SELECT 1 FROM delivery_attempts AS a "
                "WHERE a.message_id = m.message_id AND a.attempted_at >= $1)",
                since,
            )
            rows = await conn.fetch(
                """
                WITH received AS (
                    SELECT sender_domain AS domain, max(received_at) AS last_received
                    FROM inbound GROUP BY sender_domain
                ), sent AS (
                    SELECT recipient_domain AS domain,
                           count(*) FILTER (WHERE status = 'pending') AS pending
                    FROM outbound GROUP BY recipient_domain
                ), attempts AS (
                    SELECT m.recipient_domain AS domain,
                           max(a.attempted_at) FILTER (WHERE a.outcome = 'delivered')
                               AS last_delivered,
                           count(*) FILTER (WHERE a.outcome <> 'delivered'
                                            AND a.attempted_at >= $1) AS failed
                    FROM delivery_attempts AS a JOIN outbound AS m USING (message_id)
                    GROUP BY m.recipient_domain
                )
                SELECT domain, r.last_received, t.last_delivered,
                       coalesce(s.pending, 0) AS pending, coalesce(t.failed, 0) AS failed
                FROM received AS r FULL JOIN sent AS s USING (domain)
                     FULL JOIN attempts AS t USING (domain)
                ORDER BY domain
                """,
                since,
            )
            return StoreStatus(
                depths=await _depths(conn),
                inbound=inbound,
                outbound=outbound,
                since=since,
                failed_attempts=failed_attempts,
                failed_messages=failed_messages,
                peers=[
                    PeerActivity(
                        row["domain"],
                        row["last_received"],
                        row["last_delivered"],
                        row["pending"],
                        row["failed"],
                    )
                    for row in rows
                ],
            )

        return await self._store.run(op)

    async def prune(
        self, *, envelopes_before: datetime, messages_before: datetime, batch: int = PRUNE_BATCH
    ) -> Pruned:
        async def inbound_messages(conn: Any) -> Pruned:
            deleted = await conn.fetchval(
                "WITH gone AS (DELETE FROM inbound WHERE (sender_domain, message_id) IN ("
                "SELECT sender_domain, message_id FROM inbound "
                "WHERE status = $1 AND received_at < $2 LIMIT $3) RETURNING 1) "
                "SELECT count(*) FROM gone",
                _HANDLED,
                messages_before,
                batch,
            )
            return Pruned(inbound_messages=deleted)

        async def outbound_messages(conn: Any) -> Pruned:
            keys = [
                row[0]
                for row in await conn.fetch(
                    "SELECT message_id FROM outbound WHERE status <> $1 AND created_at < $2 "
                    "LIMIT $3 FOR UPDATE SKIP LOCKED",
                    _PENDING,
                    messages_before,
                    batch,
                )
            ]
            # Attempts first: they reference the message (a foreign key).
            await conn.execute(
                "DELETE FROM delivery_attempts WHERE message_id = ANY($1::text[])", keys
            )
            await conn.execute("DELETE FROM outbound WHERE message_id = ANY($1::text[])", keys)
            return Pruned(outbound_messages=len(keys))

        async def inbound_envelopes(conn: Any) -> Pruned:
            updated = await conn.fetchval(
                "WITH gone AS (UPDATE inbound SET envelope = ''::bytea "
                "WHERE (sender_domain, message_id) IN ("
                "SELECT sender_domain, message_id FROM inbound "
                "WHERE status = $1 AND received_at < $2 AND octet_length(envelope) > 0 "
                "LIMIT $3) RETURNING 1) SELECT count(*) FROM gone",
                _HANDLED,
                envelopes_before,
                batch,
            )
            return Pruned(inbound_envelopes=updated)

        async def outbound_envelopes(conn: Any) -> Pruned:
            updated = await conn.fetchval(
                "WITH gone AS (UPDATE outbound SET envelope = ''::bytea WHERE message_id IN ("
                "SELECT message_id FROM outbound "
                "WHERE status <> $1 AND created_at < $2 AND octet_length(envelope) > 0 "
                "LIMIT $3) RETURNING 1) SELECT count(*) FROM gone",
                _PENDING,
                envelopes_before,
                batch,
            )
            return Pruned(outbound_envelopes=updated)

        total = Pruned()
        for step in (inbound_messages, outbound_messages, inbound_envelopes, outbound_envelopes):
            while True:
                done = await self._store.run(step)
                total += done
                if done.total < batch:
                    break
        return total


async def _depths(conn: Any) -> QueueDepths:
    out = await conn.fetchrow(
        "SELECT count(*), min(created_at) FROM outbound WHERE status = $1", _PENDING
    )
    into = await conn.fetchrow(
        "SELECT count(*), min(received_at) FROM inbound WHERE status = $1",
        InboundStatus.RECEIVED.value,
    )
    return QueueDepths(out[0], into[0], out[1], into[1])
