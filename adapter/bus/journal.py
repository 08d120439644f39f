"""The events of the bus outbox, built from what the adapter does (pure: no I/O).

Each method returns the `EventRecord` the store writes in the transaction of the state it
reports; `adapter.bus.relay` publishes it later. Every event gets its id here, once: a
republished event keeps it, and consumers dedupe by it. Events that report one fact carry a
key (the inbound message, the outcome of one outbound message, one register change), so that
reporting the fact again (a retried handler, a concurrent sender) stores nothing new.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from operator import itemgetter
from typing import Any

from adapter.bus.events import (
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    CloudEvent,
    source_urn,
    xml_to_json,
)
from adapter.flex.state import Entry
from adapter.store.base import CommandOf, EventRecord, OutboundRecord, OutboundStatus
from adapter.store.register import UpdateKind, UpdateMeta
from adapter.uftp.identifiers import new_id as new_event_id
from adapter.uftp.messages import PayloadMessage, PayloadResponse, Role

__all__ = ["EventFormat", "EventJournal", "new_event_id"]


class EventFormat(StrEnum):
    """The data of message events: the signed inner XML as is, or its JSON form."""

    XML = "xml"
    JSON = "json"


#: Routing key of each register change, by the kind of update that made it.
REGISTER_CHANGES: dict[UpdateKind, str] = {
    UpdateKind.DSO: "dso-portfolio",
    UpdateKind.AGR: "agr-portfolio",
}


#: One encoder for every event's data (`json.dumps` with options makes one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(value: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


class EventJournal:
    """Event factory of one participant (our domain and role are the source of our events)."""

    def __init__(
        self,
        *,
        domain: str,
        role: Role,
        format: EventFormat = EventFormat.XML,
        clock: Callable[[], datetime],
        new_id: Callable[[], str] = new_event_id,
    ) -> None:
        self.domain = domain
        self.role = role
        self._role = str(role)  # as an extension attribute: a plain `str` (see `_record`)
        self.format = format
        self._clock = clock
        self._new_id = new_id

    def _record(
        self,
        route: str,
        type_: str,
        source: str,
        data: bytes,
        content_type: str,
        extensions: dict[str, str],
        key: str | None,
        command_of: CommandOf | None = None,
    ) -> EventRecord:
        """The record of one event. `extensions`: plain `str` values, not the `Role` (a
        StrEnum) some are known as (`str(role)`): the relay publishes these very values, and
        the RabbitMQ port's header encoder takes `str` only."""
        now = self._clock()
        event = CloudEvent(
            id=self._new_id(),
            source=source,
            type=type_,
            time=now,
            datacontenttype=content_type,
            data=data,
            # Those that have a value, kept in C: a message event has nine, and a loop of
            # Python per attribute cost more than all the rest of the event's making.
            extensions=dict(filter(itemgetter(1), extensions.items())),
        )
        return EventRecord(
            event.id,
            route,
            event.attributes(),
            data,
            now,
            key,
            command_of=command_of,
            cloud_event=event,
        )

    def inbound(
        self,
        message: PayloadMessage,
        inner_xml: bytes,
        *,
        sender_role: Role,
        command_id: str | None = None,
        command_of: CommandOf | None = None,
    ) -> EventRecord:
        """``in.<MessageType>``: a verified message accepted for handling, its data the inner
        XML exactly as the peer signed it (or its JSON form). `command_of`: the bus command
        the store is to find for it (`EventRecord.command_of`)."""
        if self.format is EventFormat.JSON:
            data, content_type = xml_to_json(inner_xml), JSON_CONTENT_TYPE
        else:
            data, content_type = inner_xml, XML_CONTENT_TYPE
        reference = message.reference_message_id if isinstance(message, PayloadResponse) else ""
        return self._record(
            f"in.{message.xml_name}",
            f"uftp.{message.xml_name}",
            source_urn(sender_role, message.sender_domain),
            data,
            content_type,
            {
                "uftpversion": message.version,
                "correlationid": message.conversation_id,
                "causationid": reference,
                "uftpmessageid": message.message_id,
                "uftpsender": message.sender_domain,
                "uftpsenderrole": str(sender_role),
                "uftprecipient": message.recipient_domain,
                "uftprecipientrole": self._role,
                "commandid": command_id or "",
            },
            f"in:{message.sender_domain}:{message.message_id}",
            command_of,
        )

    def outcome(
        self,
        record: OutboundRecord,
        status: OutboundStatus,
        detail: str,
        *,
        command_id: str | None = None,
    ) -> EventRecord:
        """``outcome.<delivered|failed|expired>``: how the delivery of one of our messages
        ended. Data: JSON {messageId, messageType, recipient, recipientRole, status,
        attempts, detail}."""
        value = status.value  # an enum's property: read once, not thrice
        data = {
            "messageId": record.message_id,
            "messageType": record.message_type,
            "recipient": record.recipient_domain,
            "recipientRole": record.recipient_role,
            "status": value,
            "attempts": record.attempts,
            "detail": detail,
        }
        return self._record(
            f"outcome.{value}",
            f"uftp.outcome.{value}",
            source_urn(self.role, self.domain),
            _json(data),
            JSON_CONTENT_TYPE,
            {
                "correlationid": record.conversation_id,
                "causationid": record.reference_message_id or "",
                "uftpmessagetype": record.message_type,
                "uftpmessageid": record.message_id,
                "uftpsender": self.domain,
                "uftpsenderrole": self._role,
                "uftprecipient": record.recipient_domain,
                "uftprecipientrole": str(record.recipient_role),
                "commandid": command_id or "",
            },
            f"outcome:{record.message_id}",
        )

    def register_change(
        self, kind: UpdateKind, update: UpdateMeta, summary: Mapping[str, object]
    ) -> list[EventRecord]:
        """``register.<dso-portfolio|agr-portfolio>``: an update the register applied. Data:
        JSON `adapter.store.register.change_summary`."""
        change = REGISTER_CHANGES[kind]
        sender_role = Role.DSO if kind is UpdateKind.DSO else Role.AGR
        return [
            self._record(
                f"register.{change}",
                f"uftp.register.{change}",
                source_urn(self.role, self.domain),
                _json(summary),
                JSON_CONTENT_TYPE,
                {
                    "correlationid": update.conversation_id,
                    "causationid": update.message_id,
                    "uftpsender": update.sender_domain,
                    "uftpsenderrole": str(sender_role),
                },
                f"register:{update.sender_domain}:{update.message_id}",
            )
        ]

    def flex_change(self, entry: Entry, change: str) -> list[EventRecord]:
        """``flex.<sent|received|accepted|rejected|revoked|ordered>``: a flex message
        recorded, or moved to a new standing (`adapter.store.flex`): a FlexOffer received,
        accepted by our DSO, ordered, revoked... Data: JSON {messageType, messageId,
        direction, peer, standing, reason, settledBy, reference, period, congestionPoint,
        conversationId}. Expiry is not an event: it follows from the time
        (`adapter.flex.state`)."""
        data = {
            "messageType": entry.message_type,
            "messageId": entry.message_id,
            "direction": entry.direction.value,
            "peer": entry.peer_domain,
            "standing": entry.standing.value,
            "reason": entry.reason,
            "settledBy": entry.settled_by,
            "reference": entry.reference,
            "period": entry.period.isoformat() if entry.period else None,
            "congestionPoint": entry.congestion_point,
            "conversationId": entry.conversation_id,
        }
        return [
            self._record(
                f"flex.{change}",
                f"uftp.flex.{change}",
                source_urn(self.role, self.domain),
                _json(data),
                JSON_CONTENT_TYPE,
                {
                    "correlationid": entry.conversation_id,
                    "causationid": entry.settled_by or "",
                    "uftpmessagetype": entry.message_type,
                    "uftpmessageid": entry.message_id,
                },
                f"flex:{entry.direction.value}:{entry.peer_domain}:{entry.message_id}:"
                f"{change}:{entry.settled_by or ''}",
            )
        ]

    def error(
        self,
        kind: str,
        reason: str,
        *,
        command_id: str | None = None,
        extensions: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> EventRecord:
        """``error.<kind>``: something the operator's systems must know went wrong (an
        invalid command, a request not answered in time). Data: JSON {error, reason,
        commandId}."""
        data = {"error": kind, "reason": reason, "commandId": command_id}
        return self._record(
            f"error.{kind}",
            f"uftp.error.{kind}",
            source_urn(self.role, self.domain),
            _json(data),
            JSON_CONTENT_TYPE,
            {
                **{name: str(value) for name, value in (extensions or {}).items()},
                "commandid": command_id or "",
            },
            key,
        )
