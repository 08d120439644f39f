"""Hardened XML reading and the schemas UFTP messages are validated with.

Every byte a peer sends is hostile until its signature verifies, and the inner message stays
untrusted in structure even after that. So the parser:

- refuses any document type declaration before parsing, so there is nothing to expand: no
  external entities (XXE), no billion laughs, no quadratic blow-up;
- runs libxml2 with entity substitution, DTD loading and network access off anyway, and
  reads the bytes as UTF-8 whatever the document claims (spec: the UTF-8 character set);
- keeps libxml2's built-in limits on depth and text size for every message it parses.

The SignedMessage wrapper is one element whose Body attribute holds the whole message, base64
encoded: `locate_attribute` finds that value in the raw bytes, so that the parser reads the
wrapper without it (a few hundred bytes) and the Body never becomes a tree, a libxml2 string
or a Python string.

Schemas are the project's own files in `schemas/`, loaded once per process.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar, cast

from lxml import etree

from .errors import InvalidXml

SCHEMA_DIR = Path(__file__).with_name("schemas")

T = TypeVar("T")


# (Without lxml-stubs, a venv not set up anew, lxml is Any: the ignore is for that case.)
class _RefuseAll(etree.Resolver):  # type: ignore[misc, unused-ignore]
    """Second line of defence behind the DOCTYPE check: libxml2 asks this resolver for every
    external DTD or entity it would load, and it refuses them all."""

    # lxml passes `context` too; lxml-stubs 0.5 declares the method without it.
    def resolve(self, system_url: str, public_id: str, context: object = None) -> None:
        raise ValueError(f"external resources are not loaded ({system_url!r})")


def _parser(*, huge: bool, **extra: Any) -> etree.XMLParser:
    """The hardened parser; `extra`: more of `etree.XMLParser`'s options (a target, a schema)."""
    parser = etree.XMLParser(
        huge_tree=huge,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
        encoding="utf-8",
        collect_ids=False,
        **extra,
    )
    parser.resolvers.add(_RefuseAll())
    return parser


class _LogEntry(Protocol):
    """What is read of an entry of lxml's error log (`lxml.etree._LogEntry`)."""

    @property
    def line(self) -> int: ...
    @property
    def message(self) -> str: ...


class _PerThread(threading.local):
    """lxml serialises concurrent use of one parser or validator behind a lock, and shares a
    validator's error log: each thread gets its own, so that a large message validated on a
    worker thread neither waits for nor garbles the event loop's small ones."""

    def __init__(self) -> None:
        self.parser = _parser(huge=False)
        self.huge_parser = _parser(huge=True)
        self.schemas: dict[str, etree.XMLSchema] = {}


_LOCAL = _PerThread()

# Markup declarations are only legal inside a DTD, so refusing "<!DOCTYPE" and "<!ENTITY"
# refuses every entity trick. Case matters in XML: lower-case spellings are not markup.
# (One regular expression pass: it measured faster than two literal searches.)
_DTD_MARKERS = re.compile(rb"<!(?:DOCTYPE|ENTITY)")


def _declares(data: bytes) -> bool:
    """Whether `data` holds a markup declaration (`_DTD_MARKERS`). Most messages hold no
    "!" at all, which one memchr pass tells: a tenth of the expression's time on a
    settlement of 6.7 MB (bench/README.md)."""
    return b"!" in data and _DTD_MARKERS.search(data) is not None


def parse_xml(data: bytes, *, huge: bool = False) -> etree._Element:
    """Parse `data` into its root element, or raise `InvalidXml`."""
    if _declares(data):
        raise InvalidXml("document type declarations and entities are not accepted")
    try:
        root = etree.fromstring(data, _LOCAL.huge_parser if huge else _LOCAL.parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidXml(f"not well-formed XML: {exc}") from None
    except (ValueError, etree.LxmlError) as exc:  # refused bytes, a refused resource
        raise InvalidXml(f"not XML: {exc}") from None
    if root is None:
        raise InvalidXml("empty document")
    return root


#: Bytes fed to a streaming parser at a time. The children that end within a chunk are in
#: the tree together until they are read, several times the chunk's bytes: 256 KiB of
#: portfolio connections make about 2 MB of tree (bench/README.md), and a smaller chunk saves
#: no time.
_CHUNK = 1 << 18


def stream_children(
    data: bytes, schema: Schema, tags: tuple[str, ...], read: Callable[[etree._Element], T]
) -> tuple[etree._Element, list[T]]:
    """Parse and validate `data` as `parse_xml` and `Schema.validate_root` do, reading each
    child of the root named in `tags` with `read` once it has ended and dropping it then:
    the root (without those children) and what `read` gave, in document order.

    libxml2 validates on the parser's events, so the whole tree never exists: its nodes take
    several times the bytes of the document (bench/README.md), more than the models read
    from it. Raises `InvalidXml` as those two would. An exception of `read` (on content the
    schema would refuse, read before the validator got to say so) gives way to the schema's
    verdict; if the document turns out valid, it is raised.

    The parser reports where each child starts, not where it ends: a child is complete once
    the next one starts, or the document ends. lxml takes the interpreter's lock for every
    element whose start or end it watches, whatever the tag, and an end is only reported if
    the starts are watched too: watching starts alone halves that (bench/README.md).
    """
    if _declares(data):
        raise InvalidXml("document type declarations and entities are not accepted")
    parser = etree.XMLPullParser(
        events=("start",),
        tag=tags,
        schema=schema.xsd,
        # Not False: with entity substitution off, lxml takes a document whose error is only
        # found at its end (cut short, an element or comment left open, "<" after the root)
        # for well-formed, as it ignores undefined entities in that mode, and such an error
        # is not in its log. "internal" substitutes declared internal entities only, and
        # nothing can be declared: the document type declaration is refused above.
        resolve_entities="internal",  # type: ignore[arg-type, unused-ignore]  # stubs: bool
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
        encoding="utf-8",
        collect_ids=False,
    )
    parser.resolvers.add(_RefuseAll())
    # The schema's violations reach the exception through this thread's global error log,
    # which holds those of earlier documents too: it starts empty for this one.
    etree.clear_error_log()
    results: list[T] = []
    failed: Exception | None = None
    #: The child of the root that started last, complete when the next one starts.
    open_child: etree._Element | None = None

    def done(element: etree._Element) -> None:
        nonlocal failed
        if failed is None:
            try:
                results.append(read(element))
            except Exception as exc:  # the schema's verdict comes first
                failed = exc
        element.clear()
        cast(etree._Element, element.getparent()).remove(element)

    view = memoryview(data)
    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(bytes(view[offset : offset + _CHUNK]))
            for _, event in parser.read_events():
                element = cast(etree._Element, event)  # "start" events carry the element
                parent = element.getparent()
                if parent is None or parent.getparent() is not None:
                    continue  # not a child of the root: the schema refuses it
                if open_child is not None:
                    done(open_child)
                open_child = element
        root = parser.close()
        if open_child is not None:
            done(open_child)
    except etree.XMLSyntaxError as exc:
        _raise_stream_error(exc, schema)
    except (ValueError, etree.LxmlError) as exc:  # refused bytes, a refused resource
        raise InvalidXml(f"not XML: {exc}") from None
    if failed is not None:
        raise failed
    return root, results


class _NoTree:
    """The target of `validate_stream`'s parser: no tree, no events, nothing called back per
    element; libxml2 parses and validates at C speed and this only ends the parse."""

    def close(self) -> None:
        return None


def validate_stream(data: bytes, schema: Schema) -> None:
    """Parse and validate `data` as `stream_children` does, without building a tree at all:
    the caller reads what it needs from the bytes themselves (`adapter.uftp.scan`). Raises
    `InvalidXml` in the same words as `stream_children`.

    A target parser keeps no tree: on a year of metering data this takes less than half of
    what a pull parser's events and the children's subtrees cost (bench/README.md). lxml
    does not raise a schema violation found on a target parser's events; it is in the
    parser's error log, which this reads.
    """
    if _declares(data):
        raise InvalidXml("document type declarations and entities are not accepted")
    # The stubs want every method of a target; one that has them is called per element.
    parser = _parser(huge=False, target=cast(Any, _NoTree()), schema=schema.xsd)
    try:
        etree.fromstring(data, parser)
        syntax = None
    except etree.XMLSyntaxError as exc:
        syntax = exc
    except (ValueError, etree.LxmlError) as exc:  # refused bytes, a refused resource
        raise InvalidXml(f"not XML: {exc}") from None
    # This parser's own log holds the schema's violations (the last is what `validate_root`
    # reports); a syntax error is only in the exception.
    schema_domain = etree.ErrorDomains.SCHEMASV  # type: ignore[attr-defined, unused-ignore]
    log: list[Any] = list(parser.error_log)  # type: ignore[call-overload, unused-ignore]
    violations = [e for e in log if e.domain == schema_domain]
    if violations:
        raise schema.invalid(violations[-1])
    if syntax is not None:
        # A target parser words it "line 2: b'Opening and ending tag mismatch: ...'".
        words = _TARGET_SYNTAX_ERROR.match(syntax.msg or "")
        text = f"{words[3]}, line {words[1]}" if words else str(syntax)
        raise InvalidXml(f"not well-formed XML: {text}")


#: How lxml words a target parser's syntax error: the line, then the message's repr.
_TARGET_SYNTAX_ERROR = re.compile(r"line (\d+): b(['\"])(.*)\2\Z", re.DOTALL)


def _raise_stream_error(exc: etree.XMLSyntaxError, schema: Schema) -> NoReturn:
    """The `InvalidXml` for a parse that failed on its events: a syntax error first, as when
    the tree is parsed before it is validated; a schema violation otherwise. (Of a document
    both malformed and invalid, the stream may name the violation it met before the syntax
    error.) libxml2 gives no line for a violation found on the parser's events."""
    errors: list[Any] = list(exc.error_log)  # type: ignore[call-overload, unused-ignore]
    schema_domain = etree.ErrorDomains.SCHEMASV  # type: ignore[attr-defined, unused-ignore]
    syntax = [e for e in errors if e.domain != schema_domain]
    if syntax or not errors:
        first = syntax[0] if syntax else None
        where = f", line {first.line}" if first is not None else ""
        text = f"{first.message}{where}" if first is not None else str(exc)
        raise InvalidXml(f"not well-formed XML: {text}") from None
    raise schema.invalid(errors[-1]) from None  # the last, as `validate_root` reports


# What may come before the root element (XML 1.0, production [27] Misc): white space, comments,
# processing instructions (the XML declaration among them). A document type declaration is
# refused by `parse_xml` anyway, so where one starts the prolog is not read further.
_SPACE = re.compile(rb"[ \t\r\n]+")
_BOM = b"\xef\xbb\xbf"
#: The element name of a start tag, right after its "<".
_NAME = re.compile(rb"[^ \t\r\n/>]+")
#: One attribute of a start tag up to its value's opening quote (XML 1.0, [41] and [25]).
_ATTRIBUTE = re.compile(rb"[ \t\r\n]+([^ \t\r\n=/>]+)[ \t\r\n]*=[ \t\r\n]*([\"'])")


@dataclass(frozen=True, slots=True)
class Located:
    """Where `locate_attribute` found the root element and the attribute's raw value."""

    #: The root element's name as written (with its prefix, if any); None when the bytes
    #: before it are not what a well-formed prolog holds within the limit.
    root: str | None
    #: The span of the attribute's value between its quotes; None when the root's start tag
    #: does not hold the attribute (before the limit).
    value: slice | None


def locate_attribute(data: bytes, name: bytes, *, limit: int) -> Located:
    """Find the raw value of the root element's attribute `name` without parsing the document.

    Only the first `limit` bytes are read, except for the value itself, which is only searched
    for its closing quote: the caller decides what to do with a document whose prolog or
    attributes before `name` exceed that. What this finds is what an XML parser reads, for any
    well-formed document: the prolog holds white space, comments and processing instructions
    only, a comment ends at the first "-->", a processing instruction at the first "?>", and an
    attribute value at the next quote of the kind that opened it. A document that is not
    well-formed may be read otherwise here, and is then refused by the parser.
    """
    pos = 3 if data.startswith(_BOM) else 0
    while True:
        space = _SPACE.match(data, pos)
        if space is not None:
            pos = space.end()
        if pos >= limit:
            return Located(None, None)
        if data.startswith(b"<?", pos):
            end = data.find(b"?>", pos + 2, limit)
            pos = end + 2
        elif data.startswith(b"<!--", pos):
            end = data.find(b"-->", pos + 4, limit)
            pos = end + 3
        elif data.startswith(b"<", pos):
            break
        else:
            return Located(None, None)
        if end < 0:
            return Located(None, None)
    tag = _NAME.match(data, pos + 1)
    if tag is None:
        return Located(None, None)
    root = tag.group().decode("utf-8", "replace")
    pos = tag.end()
    while pos < limit:
        attribute = _ATTRIBUTE.match(data, pos)
        if attribute is None:
            break  # the end of the start tag (or not well-formed: the parser will say so)
        start = attribute.end()
        end = data.find(attribute.group(2), start)
        if end < 0:
            break
        if attribute.group(1) == name:
            return Located(root, slice(start, end))
        pos = end + 1
    return Located(root, None)


class Schema:
    """One UFTP schema version, compiled once per thread that uses it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._path = SCHEMA_DIR / f"{name}.xsd"

    @property
    def xsd(self) -> etree.XMLSchema:
        xsd = _LOCAL.schemas.get(self.name)
        if xsd is None:
            # Our own file, from the package: no DTD, no includes, nothing to resolve.
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            xsd = _LOCAL.schemas[self.name] = etree.XMLSchema(etree.parse(str(self._path), parser))
        return xsd

    def validate_root(self, root: etree._Element) -> None:
        """Raise `InvalidXml` naming the first violation if `root` is not valid."""
        xsd = self.xsd
        if not xsd.validate(root):
            # lxml-stubs 0.5 declares no member of the error log: the entry's type is ours.
            error: _LogEntry | None = xsd.error_log.last_error  # type: ignore[attr-defined, unused-ignore]
            raise self.invalid(error)

    def invalid(self, error: _LogEntry | None) -> InvalidXml:
        """The `InvalidXml` that names the violation `error` of this schema."""
        where = f" (line {error.line})" if error is not None and error.line else ""
        message = error.message if error is not None else "schema violation"
        problem = f"not valid against the UFTP {self.name} schema{where}"
        # libxml2 starts with what is wrong ("Element 'Connection', attribute
        # 'EntityAddress'") and then quotes the value, which the reason leaves out.
        what, colon, _ = message.partition(": ")
        reason = f"{problem}: {what}" if colon and what.startswith("Element '") else problem
        return InvalidXml(f"{problem}: {message}", reason=reason)


class Schemas:
    """The schemas by Version.

    3.0.0 and 3.1.0 differ in FlexOffer and FlexOrder only (3.1.0 added Unsolicited, made a
    FlexOrder's FlexOfferMessageID optional and gave it a ServiceType), which is enough for a
    schema each; 4.0.0 is the draft next version. A message of any other Version is validated
    with the latest released schema so that, if it is otherwise sound, it can be answered
    with an "Unsupported Version" rejection instead of an HTTP error.
    """

    def __init__(self) -> None:
        self.first = Schema("3.0.0")
        self.latest = Schema("3.1.0")
        self.draft = Schema("4.0.0")

    def for_version(self, version: str | None) -> Schema:
        if version is not None:
            if version.startswith("4."):
                return self.draft
            if version.startswith("3.0."):
                return self.first
        return self.latest


SCHEMAS = Schemas()

# Attribute values are written between double quotes. Besides the three markup characters,
# tabs and line ends must be escaped, or attribute-value normalisation turns them into
# spaces on the receiving side and the value would not round-trip.
NEEDS_ESCAPE = re.compile(r'[&<>"\t\n\r]')
_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def attr(value: str) -> str:
    """Escape `value` for a double-quoted XML attribute (fast when nothing needs escaping)."""
    if NEEDS_ESCAPE.search(value) is None:
        return value
    return value.translate(_ESCAPES)
