"""New identifiers for the messages we send (MessageID, ConversationID) and for bus events.

The spec asks for a MessageID unique to its sender and a ConversationID unique to a
conversation (metadata-attributes.md) and shows UUIDs; a random UUID gives both without
coordination between processes.
"""

from __future__ import annotations

import os

__all__ = ["new_id"]


def new_id() -> str:
    """A random UUID (version 4, RFC 9562) in its canonical form, as ``str(uuid.uuid4())``
    gives it, without making a `uuid.UUID` on the way: every message we send takes one or two,
    and the object's checks and conversions cost twice the bytes' formatting."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant RFC 9562
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
