"""Hardened XML reading and the schemas UFTP messages are validated with.

Every byte a peer sends is hostile until its signature verifies, and the inner message stays
untrusted in structure even after that. So the parser:

- refuses any document type declaration before parsing, so there is nothing to expand: no
  external entities (XXE), no billion laughs, no quadratic blow-up;
- runs libxml2 with entity substitution, DTD loading and network access off anyway, and
  reads the bytes as UTF-8 whatever the document claims (spec: the UTF-8 character set);
- keeps libxml2's built-in limits on depth and text size for inner messages (`huge=False`);
  only the SignedMessage wrapper, whose one attribute holds the whole base64 Body, lifts
  them, and it has no children to nest.

Schemas are the project's own files in `schemas/`, loaded once per process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from .errors import InvalidXml

SCHEMA_DIR = Path(__file__).with_name("schemas")

_PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "remove_comments": True,
    "remove_pis": True,
    "encoding": "utf-8",
    "collect_ids": False,
}
_PARSER = etree.XMLParser(huge_tree=False, **_PARSER_OPTIONS)
_HUGE_PARSER = etree.XMLParser(huge_tree=True, **_PARSER_OPTIONS)

# Markup declarations are only legal inside a DTD, so refusing "<!DOCTYPE" and "<!ENTITY"
# refuses every entity trick. Case matters in XML: lower-case spellings are not markup.
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)")


def parse_xml(data: bytes, *, huge: bool = False) -> etree._Element:
    """Parse `data` into its root element, or raise `InvalidXml`."""
    if _DTD.search(data):
        raise InvalidXml("document type declarations and entities are not accepted")
    try:
        root = etree.fromstring(data, _HUGE_PARSER if huge else _PARSER)
    except etree.XMLSyntaxError as exc:
        raise InvalidXml(f"not well-formed XML: {exc}") from None
    except ValueError as exc:  # e.g. bytes lxml refuses outright
        raise InvalidXml(f"not XML: {exc}") from None
    if root is None:
        raise InvalidXml("empty document")
    return root


@dataclass(frozen=True, slots=True, eq=False)
class Schema:
    """One UFTP schema version, compiled once."""

    name: str
    xsd: etree.XMLSchema

    def validate_root(self, root: etree._Element) -> None:
        """Raise `InvalidXml` naming the first violation if `root` is not valid."""
        if not self.xsd.validate(root):
            error = self.xsd.error_log.last_error
            where = f" (line {error.line})" if error is not None and error.line else ""
            message = error.message if error is not None else "schema violation"
            raise InvalidXml(f"not valid against the UFTP {self.name} schema{where}: {message}")


def _load(name: str) -> Schema:
    path = SCHEMA_DIR / f"{name}.xsd"
    # The schema files are ours, but read them with the same hardened parser all the same.
    doc = etree.parse(str(path), _PARSER)
    return Schema(name, etree.XMLSchema(doc))


class Schemas:
    """The schemas by Version.

    3.0.0 and 3.1.0 share one schema for every message this project handles (the 3.1.0
    changes concern FlexOffer and FlexOrder only); 4.0.0 is the draft next version. A message
    of any other Version is validated with the latest released schema so that, if it is
    otherwise sound, it can be answered with an "Unsupported Version" rejection instead of
    an HTTP error.
    """

    def __init__(self) -> None:
        self._v3: Schema | None = None
        self._v4: Schema | None = None

    @property
    def latest(self) -> Schema:
        if self._v3 is None:
            self._v3 = _load("3.1.0")
        return self._v3

    @property
    def draft(self) -> Schema:
        if self._v4 is None:
            self._v4 = _load("4.0.0")
        return self._v4

    def for_version(self, version: str | None) -> Schema:
        if version is not None and version.startswith("4."):
            return self.draft
        return self.latest


SCHEMAS = Schemas()

# Attribute values are written between double quotes. Besides the three markup characters,
# tabs and line ends must be escaped, or attribute-value normalisation turns them into
# spaces on the receiving side and the value would not round-trip.
_NEEDS_ESCAPE = re.compile(r'[&<>"\t\n\r]')
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
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return value.translate(_ESCAPES)
