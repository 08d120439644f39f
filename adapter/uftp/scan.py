"""Reading a large Metering message from its validated bytes, column-wise.

A year of 15-minute ISPs for 100 connections is 3.5 million ISP elements. Read through lxml,
each costs a Python proxy object, two attribute look-ups and a `Decimal`; the tree beside
them takes several times the bytes of the document (bench/README.md). Here libxml2 parses
and validates without building any tree (`xml.validate_stream`), and the values are then
taken from the bytes by regular expressions, a column at a time, at C speed.

That reading is exact only for documents written plainly, which is what every participant
writes; anything else is left to the element reading (None):

- After the root's start tag, no "&" (so no entity or character reference: an attribute
  value is the bytes between its quotes), no "'" (every value is between double quotes, and
  none holds a double quote), no "<!" (no comment, no CDATA section) and no "<?" (no
  processing instruction), and no "xmlns". Then every "<" opens a tag or an end tag (XML
  1.0: a "<" is not allowed in an attribute value, and the schema allows no text), and a
  `Name="` can only be an attribute of the element whose tag holds it.
- Each column holds one value per element: ` Start="` and ` Value="` (a space before the
  name, none around the "=") are found as often as "<ISP" in the profile. The schema
  requires both attributes of every ISP and allows no other attribute there, so a count
  that differs means a way of writing this does not read.

The root's start tag, which may hold anything XML allows, is parsed by libxml2. Values keep
the line ends and tabs that attribute-value normalisation would turn into spaces: the schema
allows them around a number only, where `int` and `Decimal` ignore them as they ignore the
spaces.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .messages import MeteringISPs, MeteringProfile, MeteringProfileEnum, MeteringUnit

#: What may come before the root element: a byte order mark, white space, the XML
#: declaration, processing instructions and comments (XML 1.0, [22], [27]).
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:[ \t\r\n]+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
#: A start tag: its name and its attributes, each value between either kind of quote.
_START_TAG = re.compile(
    rb"<([^ \t\r\n/>]+)((?:[ \t\r\n]+[^ \t\r\n=/>]+[ \t\r\n]*=[ \t\r\n]*"
    rb"(?:\"[^\"]*\"|'[^']*'))*)[ \t\r\n]*>"
)
#: One attribute of a plainly written start tag (`_plain` holds).
_ATTRIBUTE = re.compile(rb"[ \t\r\n]+([^ \t\r\n=]+)[ \t\r\n]*=[ \t\r\n]*\"([^\"]*)\"")
#: Attribute-value normalisation (XML 1.0, 3.3.3), after line-end normalisation.
_NORMALISED = bytes.maketrans(b"\t\n\r", b"   ")
#: What makes the bytes after the root's start tag other than plain (see the module).
_NOT_PLAIN = (b"&", b"'", b"<!", b"<?", b"xmlns")

_ISP_START = re.compile(rb' Start="([^"]*)"')
_ISP_VALUE = re.compile(rb' Value="([^"]*)"')

_PROFILE_TYPES: dict[str, MeteringProfileEnum] = {m.value: m for m in MeteringProfileEnum}
_UNITS: dict[str, MeteringUnit] = {m.value: m for m in MeteringUnit}


def plain_content(data: bytes) -> tuple[bytes, int] | None:
    """The root's start tag, closed as an empty element (`<Metering ... />`, for
    `xml.parse_xml` to read once the whole is found valid), and where the root's content
    starts in `data`; None if the content is not written plainly."""
    prolog = _PROLOG.match(data)
    tag = _START_TAG.match(data, prolog.end() if prolog else 0)
    if tag is None:
        return None
    body = tag.end()
    if any(data.find(marker, body) >= 0 for marker in _NOT_PLAIN):
        return None
    return b"<" + tag[1] + tag[2] + b"/>", body


def _attributes(tag: bytes) -> dict[str, str]:
    """The attributes of one plainly written start tag (after its name), as a parser reads
    them."""
    return {
        name.decode(): value.replace(b"\r\n", b"\n").translate(_NORMALISED).decode()
        for name, value in _ATTRIBUTE.findall(tag)
    }


@lru_cache(maxsize=8)
def _counting(count: int) -> list[bytes]:
    """b"1" to the ISP count, as ISP numbers are written."""
    return [b"%d" % number for number in range(1, count + 1)]


def metering_profiles(data: bytes, body: int) -> list[MeteringProfile] | None:
    """The Profiles of a valid Metering message whose content starts at `body`, each with
    its ISPs column-wise; None if they are not written as this reads them.

    Raises ValueError for an ISP number beyond what `int` reads (over 4,300 digits)."""
    profiles: list[MeteringProfile] = []
    position = body
    while (start := data.find(b"<Profile", position)) >= 0:
        # The Profile's attributes are two enumerations: no ">" in their values.
        tag_end = data.find(b">", start)
        end = data.find(b"</Profile", tag_end)
        attributes = _attributes(data[start + len(b"<Profile") : tag_end])
        count = data.count(b"<ISP", tag_end, end)
        starts = _ISP_START.findall(data, tag_end, end)
        values = _ISP_VALUE.findall(data, tag_end, end)
        if len(starts) != count or len(values) != count or len(attributes) != 2:
            return None
        numbers = range(1, count + 1) if starts == _counting(count) else tuple(map(int, starts))
        profiles.append(
            MeteringProfile(
                profile_type=_PROFILE_TYPES[attributes["ProfileType"]],
                unit=_UNITS[attributes["Unit"]],
                isps=MeteringISPs(numbers, tuple(values)),
            )
        )
        position = end
    return profiles
