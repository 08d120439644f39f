"""New identifiers for the messages we send (MessageID, ConversationID) and for bus events.

A MessageID is "a UUID/GUID as per IETF RFC 4122", unique to its sender, and a ConversationID
unique to a conversation (metadata-attributes.md); the schema's UUIDType asks only for five
groups of hex digits. Both are made here without coordination between processes.

MessageIDs are version 7 UUIDs (RFC 9562, which replaced RFC 4122 and keeps its format): 48
bits of Unix milliseconds, then 74 random bits, so they are as unique as random ones (a
collision needs two messages in one millisecond drawing the same 74 bits) and still
unguessable, while they sort by the time they were made. That order is what the store wants.
A store finds a message by its MessageID through an index (outbound's MessageID, inbound's
(sender, MessageID), the delivery attempts keyed by it); a random key lands on a random leaf
page of that index, which its commit then writes whole to the SQLite WAL (and PostgreSQL to
its WAL and buffers): a page per index per message, none shared with the other messages of the
commit. Keys in order of creation go to the last leaf, which the messages of one commit share:
bench/README.md, "Time-ordered MessageIDs", counts three pages fewer per round trip on each
side. The time they reveal is the message's TimeStamp, which it carries anyway.

ConversationIDs and bus event ids, which no index of ours is ordered by, are random (version 4).
Both are formatted from their bytes: `uuid.UUID`'s checks and conversions cost twice that, and
every message we send takes one or two.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_id", "new_message_id"]


def new_id() -> str:
    """A random UUID (version 4) in its canonical form, as ``str(uuid.uuid4())`` gives it."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant RFC 9562 (RFC 4122's)
    return _canonical(raw)


def new_message_id() -> str:
    """A new version 7 UUID (RFC 9562) in its canonical lower-case form."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = raw[6] & 0x0F | 0x70  # version 7
    raw[8] = raw[8] & 0x3F | 0x80  # variant RFC 9562 (RFC 4122's)
    return _canonical(raw)


def _canonical(raw: bytearray) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
