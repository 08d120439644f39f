"""The UFTP protocol core: messages, codec, envelope and errors, and the decisions of the
protocol - the inbound checks (`inbound`), the answers (`answers`), the retries (`retry`).

Pure by design: nothing here performs I/O beyond reading the package's own schema files, reads
the clock, keeps state between calls, starts a thread or pauses the garbage collector, so every
rule can be tested with bytes in and bytes out. The edges around it (`adapter.server`,
`adapter.outbox`, `adapter.participant`) do the I/O and give it the time; it imports nothing
of theirs.
"""

from .codec import KNOWN_VERSIONS, decode, encode
from .envelope import (
    PublicKeys,
    SignedMessage,
    format_cs1,
    open_sealed,
    parse_cs1,
    parse_envelope,
    seal,
)
from .errors import (
    AdapterError,
    IncompleteMessage,
    InvalidOutbound,
    InvalidSignature,
    InvalidXml,
    Reason,
    Rejection,
    TransportError,
    UftpError,
)
from .messages import *  # noqa: F403  (the message models are this package's vocabulary)
from .messages import __all__ as _message_names

__all__ = [
    *_message_names,
    "KNOWN_VERSIONS",
    "AdapterError",
    "IncompleteMessage",
    "InvalidOutbound",
    "InvalidSignature",
    "InvalidXml",
    "PublicKeys",
    "Reason",
    "Rejection",
    "SignedMessage",
    "TransportError",
    "UftpError",
    "decode",
    "encode",
    "format_cs1",
    "open_sealed",
    "parse_cs1",
    "parse_envelope",
    "seal",
]
