"""CloudEvents 1.0 as the bridge writes and reads them: the model, the bindings, the JSON form.

An event is a `CloudEvent`: the context attributes of the CloudEvents specification plus the
extensions of this project, and `data`, the bytes of the body. Message events (routing key
``in.<MessageType>``) carry as data the inner UFTP XML exactly as the peer signed it
(``text/xml; charset=utf-8``), or its JSON form (`xml_to_json`) when the bridge is configured
with ``format = "json"``.

Attributes (all strings; see README "Connecting your systems"):

=====================  =====================================================================
``id``                 a new id per event, stable across republication: consumers dedupe by it
``source``             ``urn:uftp:<role>:<domain>`` of the message's sender
``type``               ``uftp.<MessageType>`` (``uftp.outcome.<status>``, ``uftp.register.*``,
                       ``uftp.flex.*``, ``uftp.error.*`` for the events the adapter itself
                       raises)
``time``               when the adapter recorded what the event reports (RFC 3339, UTC)
``uftpversion``        the UFTP Version of the message
``correlationid``      the message's ConversationID
``causationid``        the MessageID the message refers to (a response's request)
``uftpmessageid``      the message's MessageID
``uftpsender``         SenderDomain; ``uftpsenderrole`` its role
``uftprecipient``      RecipientDomain; ``uftprecipientrole`` its role
``commandid``          the id of the bus command the message or outcome goes back to
=====================  =====================================================================

Bindings, binary content mode only (the data stays the bytes it is):

* AMQP (RabbitMQ; CloudEvents AMQP protocol binding 1.0, section 3.1): ``datacontenttype``
  is the message's content-type property; every other attribute is an application property
  (an AMQP 0-9-1 header) named ``cloudEvents_<name>``, its value the canonical string. The
  binding allows ``cloudEvents:`` as well; both are read, ``_`` is written (it is what JMS
  selectors accept, as the binding recommends).
* NATS (CloudEvents NATS protocol binding 1.0, section 3.1): every attribute, including
  ``datacontenttype``, is a header ``ce-<name>``, its value percent-encoded as section
  3.1.3.2 prescribes (space, double quote, percent and everything outside printable ASCII).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import filterfalse
from typing import Any, Final, cast
from urllib.parse import unquote_to_bytes

from lxml import etree

from adapter.uftp import codec
from adapter.uftp.errors import AdapterError, InvalidXml
from adapter.uftp.messages import PayloadMessage
from adapter.uftp.xml import parse_xml

__all__ = [
    "AMQP_PREFIX",
    "JSON_CONTENT_TYPE",
    "NATS_PREFIX",
    "SPECVERSION",
    "XML_CONTENT_TYPE",
    "CloudEvent",
    "InvalidEvent",
    "element_to_json",
    "from_amqp",
    "from_nats",
    "json_to_element",
    "message_from_json",
    "message_to_json",
    "nats_header_lines",
    "nats_headers",
    "source_urn",
    "split_nats",
    "to_amqp",
    "to_nats",
    "xml_to_json",
]

SPECVERSION: Final = "1.0"
XML_CONTENT_TYPE: Final = "text/xml; charset=utf-8"
JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
AMQP_PREFIX: Final = "cloudEvents_"
_AMQP_PREFIXES: Final = ("cloudEvents_", "cloudEvents:")
#: Both prefixes are as long: a header's attribute name is what follows either.
_AMQP_PREFIX_LENGTH: Final = len(AMQP_PREFIX)
NATS_PREFIX: Final = "ce-"

#: The attributes every CloudEvent carries (CloudEvents 1.0, "REQUIRED Attributes").
REQUIRED: Final = ("id", "source", "specversion", "type")
#: CloudEvents 1.0: attribute names consist of lower-case ASCII letters and digits only.
_ATTRIBUTE_NAME: Final = re.compile(r"[a-z0-9]{1,20}")
#: The extension attributes the adapter writes (the table above): valid names, known without
#: a pattern match on the way of every event.
EXTENSIONS: Final = frozenset(
    {
        "uftpversion",
        "correlationid",
        "causationid",
        "uftpmessageid",
        "uftpmessagetype",
        "uftpsender",
        "uftpsenderrole",
        "uftprecipient",
        "uftprecipientrole",
        "commandid",
    }
)


class InvalidEvent(AdapterError, ValueError):
    """Attributes that do not make a CloudEvent (a required one missing, a bad name)."""


def source_urn(role: str, domain: str) -> str:
    """The ``source`` of an event about a message sent by `domain` in `role`."""
    return f"urn:uftp:{role}:{domain}"


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the CloudEvents Timestamp type asks."""
    if value.tzinfo is None:
        raise ValueError("a CloudEvent time must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset")
    return value


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvents 1.0 event: context attributes and data (bytes, opaque here)."""

    id: str
    source: str
    type: str
    time: datetime
    datacontenttype: str
    data: bytes
    #: Extension attributes (name -> canonical string), e.g. ``correlationid``.
    extensions: Mapping[str, str] = field(default_factory=dict)
    #: `attributes()` once made: the journal makes them to store the event, and the bus
    #: port again to publish it; an event does not change in between.
    _attributes: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.extensions.keys() <= EXTENSIONS:
            # The adapter's own names, all valid (tests/bus/test_events.py checks them): what
            # every event the journal makes has, told by one subset test, not one per name.
            return
        for name in self.extensions:
            if name not in EXTENSIONS and (not _ATTRIBUTE_NAME.fullmatch(name) or name in _CORE):
                raise InvalidEvent(f"{name!r} is not a valid extension attribute name")

    def attributes(self) -> Mapping[str, str]:
        """Every attribute as its canonical string, ``datacontenttype`` included: the same
        mapping each time, not to be changed."""
        attributes = self._attributes
        if attributes is None:
            attributes = {
                "specversion": SPECVERSION,
                "id": self.id,
                "source": self.source,
                "type": self.type,
                "time": format_time(self.time),
                "datacontenttype": self.datacontenttype,
            }
            attributes.update(self.extensions)
            object.__setattr__(self, "_attributes", attributes)  # frozen: set once, here
        return attributes

    def extended(self, name: str, value: str) -> CloudEvent:
        """This event with the extension attribute `name` set to `value` (its attributes,
        if made, not made again)."""
        event = CloudEvent(
            self.id,
            self.source,
            self.type,
            self.time,
            self.datacontenttype,
            self.data,
            {**self.extensions, name: value},
        )
        if self._attributes is not None:
            object.__setattr__(event, "_attributes", {**self._attributes, name: value})
        return event

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, str], data: bytes) -> CloudEvent:
        """The event `attributes` (as `attributes()` gives them) and `data` describe."""
        missing = [name for name in REQUIRED if not attributes.get(name)]
        if missing:
            raise InvalidEvent(f"missing CloudEvents attributes: {', '.join(missing)}")
        if attributes["specversion"] != SPECVERSION:
            raise InvalidEvent(f"specversion {attributes['specversion']!r} is not {SPECVERSION}")
        try:
            time = parse_time(attributes["time"]) if attributes.get("time") else None
        except ValueError as exc:
            raise InvalidEvent(f"time: {exc}") from None
        if time is None:
            raise InvalidEvent("missing CloudEvents attribute: time")
        return cls(
            id=attributes["id"],
            source=attributes["source"],
            type=attributes["type"],
            time=time,
            datacontenttype=attributes.get("datacontenttype", ""),
            data=data,
            extensions={k: v for k, v in attributes.items() if k not in _CORE},
        )


_CORE: Final = frozenset({*REQUIRED, "time", "datacontenttype", "dataschema", "subject"})


# -- AMQP binding -----------------------------------------------------------------------------


def to_amqp(event: CloudEvent) -> tuple[dict[str, str], str]:
    """(application properties, content type) of `event` in binary mode."""
    attributes = event.attributes()
    headers = {
        AMQP_PREFIX + name: value for name, value in attributes.items() if name != "datacontenttype"
    }
    return headers, attributes["datacontenttype"]


def from_amqp(headers: Mapping[str, object], content_type: str | None) -> dict[str, str]:
    """The CloudEvents attributes of an AMQP message in binary mode (either separator).

    Values are read as the binding allows: canonical strings, or native AMQP values (bytes
    as UTF-8, timestamps, numbers), turned into canonical strings."""
    attributes: dict[str, str] = {}
    for key, value in headers.items():
        if value is not None and key.startswith(_AMQP_PREFIXES):
            # Most values are already what `_canonical` would make of them: no call for those.
            attributes[key[_AMQP_PREFIX_LENGTH:]] = (
                value if type(value) is str else _canonical(value)
            )
    if content_type:
        attributes["datacontenttype"] = content_type
    return attributes


def _canonical(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return format_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- NATS binding -----------------------------------------------------------------------------

#: The bytes the binding carries as they stand: printable ASCII but space, ``"`` and ``%``.
_PLAIN: Final = frozenset(range(0x21, 0x7F)) - {0x22, 0x25}
_PLAIN_BYTES: Final = bytes(sorted(_PLAIN))
#: A ``%`` that does not start two hex digits.
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _nothing_to_encode(text: str) -> bool:
    """Whether `text` needs no percent-encoding (most values do not: ids, domains, times,
    types): whether it is ASCII (``isascii`` reads a flag of the string, it does not scan)
    and nothing is left of its bytes once the plain ones are deleted, in C. The same answer
    as ``re.fullmatch(r"[!#-$&-~]*", text)`` (tests/bus/test_events.py holds the two to it
    on every character and on random strings), at less cost on long strings and far less
    per call (`_encoded_values`)."""
    return text.isascii() and not text.encode("ascii").translate(None, _PLAIN_BYTES)


def _percent_encode(text: str) -> str:
    encoded = _ENCODED.get(text)
    if encoded is not None:
        return encoded
    if _nothing_to_encode(text):
        return text
    return _encode_bytes(text)


def _encode_bytes(text: str) -> str:
    return "".join(chr(byte) if byte in _PLAIN else f"%{byte:02X}" for byte in text.encode("utf-8"))


#: Values that need encoding and most events carry (their content type, with its space):
#: encoded once, not byte by byte per event.
_ENCODED: Final = {text: _encode_bytes(text) for text in (XML_CONTENT_TYPE, JSON_CONTENT_TYPE)}
_DECODED: Final = {encoded: text for text, encoded in _ENCODED.items()}


def _percent_decode(text: str) -> str:
    """A header value as the binding percent-encodes it, decoded: every ``%`` starts two hex
    digits, and the bytes must be UTF-8. Most values (ids, domains, types, times) hold no
    ``%`` and no other character than ASCII: they are the value as it stands, with no
    per-character loop on the way of every command."""
    known = _DECODED.get(text)  # a content type as we encode it: no loop, no unquote
    if known is not None:
        return known
    if len(text) >= 2 and text[0] == text[-1] == '"':  # older senders' quoted strings
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    if "%" not in text and text.isascii():
        return text
    if _BAD_ESCAPE.search(text):
        raise InvalidEvent(f"bad percent-encoding in header value {text!r}")
    try:
        return unquote_to_bytes(text).decode("utf-8")  # strict: overlong, invalid refused
    except UnicodeDecodeError:
        raise InvalidEvent(f"header value {text!r} is not UTF-8 once decoded") from None


def to_nats(event: CloudEvent) -> dict[str, str]:
    """The NATS headers of `event` in binary mode."""
    return nats_headers(event.attributes())


#: A header of the binding as a line of the protocol's header block.
_NATS_LINE: Final = (NATS_PREFIX + "{}: {}\r\n").format


def _encoded_values(values: Collection[str]) -> Iterator[str]:
    """`values` percent-encoded as the binding asks, in their order. When every value's
    encoding is known at once (nearly always: ids, domains, types, times need none, the
    content type is one of two, encoded once in `_ENCODED`), they are mapped to it in C,
    without a call of Python per value (some 30 opcodes per attribute, 14 or so attributes
    per event); else each goes through `_percent_encode`.

    Whether it is known is asked of all the values but the content types at once, joined:
    a character that needs encoding is one in the joined string, whichever value it came
    from. So asked, this costs some 14,000 instructions an event (callgrind, the two events
    of a TestMessage command), where a regular expression matched to each value (one call
    of it a value) cost 34,000."""
    if _nothing_to_encode("".join(filterfalse(_ENCODED.__contains__, values))):
        return map(_ENCODED.get, values, values)  # the value itself unless a content type
    return map(_percent_encode, values)


def nats_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """The NATS headers of CloudEvents `attributes` (canonical strings) in binary mode."""
    names = map(NATS_PREFIX.__add__, attributes)
    return dict(zip(names, _encoded_values(attributes.values()), strict=True))


def nats_header_lines(event: CloudEvent) -> str:
    """The headers `to_nats` gives for `event`, as the lines of the NATS protocol's header
    block (``ce-<name>: <value>`` and CRLF each, in the same order), without the dict of
    them: what the bus port writes itself (its names are attribute names, which `CloudEvent`
    checks; its values are percent-encoded: neither holds a line break)."""
    attributes = event.attributes()
    return "".join(map(_NATS_LINE, attributes, _encoded_values(attributes.values())))


def from_nats(headers: Mapping[str, str]) -> dict[str, str]:
    """The CloudEvents attributes of a NATS message in binary mode (`split_nats`)."""
    return split_nats(headers)[0]


def split_nats(headers: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The CloudEvents attributes of a NATS message in binary mode (header names are
    case-insensitive in NATS), and the headers that are not (as they are), in one pass."""
    attributes: dict[str, str] = {}
    others: dict[str, str] = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower.startswith(NATS_PREFIX):
            attributes[lower[len(NATS_PREFIX) :]] = _percent_decode(value)
        else:
            others[key] = value
    return attributes, others


# -- the JSON form of a UFTP message ----------------------------------------------------------
#
# Schema: {"<RootElement>": OBJECT}, where OBJECT maps each XML attribute name of an element to
# its value, a string exactly as in the XML, and each child element name to an array of
# OBJECTs, in document order. UFTP messages carry no text content and no namespaces, so this
# is the whole message; it converts back to the same XML, which the codec then validates
# against the schema of its Version, as any inbound message.

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
#: Elements a JSON message may hold before it is refused: the inner message's size is bounded
#: by the transport (max_body_bytes) first; this bounds the tree built from it.
MAX_JSON_ELEMENTS: Final = 2_000_000


def element_to_json(root: etree._Element) -> dict[str, Any]:
    """The JSON form (as Python objects) of a UFTP message element."""
    return {str(root.tag): _object(root)}


def _object(element: etree._Element) -> dict[str, Any]:
    # Attribute names and values are str in Python 3; the stub's `_Attrib` also allows bytes.
    result: dict[str, Any] = dict(cast(Mapping[str, str], element.attrib))
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions carry nothing
        if child.tag in element.attrib:
            raise InvalidXml(f"<{element.tag}> has an attribute and a child named {child.tag}")
        result.setdefault(child.tag, []).append(_object(child))
    return result


def xml_to_json(xml: bytes) -> bytes:
    """The JSON form of a UFTP message given as XML (UTF-8, compact)."""
    return json.dumps(
        element_to_json(parse_xml(xml)), ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def json_to_element(data: bytes) -> etree._Element:
    """The XML element tree of a message in JSON form. Raises `InvalidXml` when the JSON does
    not have the shape above; whether the message is valid is the codec's question."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidXml(f"not JSON: {exc}") from None
    if not isinstance(value, dict) or len(value) != 1:
        raise InvalidXml('expected one JSON object {"<MessageType>": {...}}')
    ((tag, body),) = value.items()
    try:
        return _element(tag, body, "$", [MAX_JSON_ELEMENTS])
    except RecursionError:
        raise InvalidXml("the JSON message is nested too deeply") from None


def _element(tag: object, body: object, where: str, budget: list[int]) -> etree._Element:
    if not isinstance(tag, str) or not _NAME.fullmatch(tag):
        raise InvalidXml(f"{where}: {tag!r} is not an element name")
    if not isinstance(body, dict):
        raise InvalidXml(f"{where}.{tag}: expected an object")
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidXml(f"more than {MAX_JSON_ELEMENTS} elements")
    element = etree.Element(tag)
    children: list[tuple[str, list[object]]] = []
    for name, value in body.items():
        if not _NAME.fullmatch(name):
            raise InvalidXml(f"{where}.{tag}: {name!r} is not an attribute or element name")
        if isinstance(value, str):
            try:
                element.set(name, value)
            except ValueError as exc:  # control characters XML cannot hold
                raise InvalidXml(f"{where}.{tag}.{name}: {exc}") from None
        elif isinstance(value, list):
            children.append((name, value))
        else:
            raise InvalidXml(
                f"{where}.{tag}.{name}: expected a string (attribute) or an array (elements)"
            )
    for name, items in children:
        for index, item in enumerate(items):
            element.append(_element(name, item, f"{where}.{tag}.{name}[{index}]", budget))
    return element


def message_to_json(message: PayloadMessage) -> bytes:
    """The JSON form of a typed message (metadata complete), through its wire XML."""
    return xml_to_json(codec.encode(message, validate=False))


def message_from_json(data: bytes) -> PayloadMessage:
    """The typed message a JSON form describes, validated as inbound XML is."""
    return codec.decode_element(json_to_element(data))
