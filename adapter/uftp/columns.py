"""Reading the Connection rows of a large portfolio update column-wise.

A DSOPortfolioUpdate of 100 congestion points x 1,000 connections holds 100,000 Connection
elements. Read one element at a time, each costs a Python proxy object and three attribute
look-ups, and the message costs 100,000 times that. Read column-wise, libxml2 collects the
values and Python only slices lists:

- One XPath returns every Connection attribute value in document order. EntityAddress and
  StartPeriod are required, EndPeriod is the only optional attribute (XSD:
  DSOPortfolioUpdateConnectionType, AGRPortfolioUpdateConnectionType), so when there are
  exactly two values per connection there is no EndPeriod and the values are pairs.
- Otherwise a small XSLT writes each connection's EndPeriod, or nothing, on a line of its
  own. That says which connections hold three values. The EndPeriod value is taken out of
  each of them, and pairs remain.

The order of the attributes within an element is the sender's choice. A pair read the wrong
way round puts an EntityAddress among the StartPeriods, where it cannot be read as a date
("ean.8716...", "ea1.2013-..."); the rows are then not read here and the caller reads them
element by element.

Run on the root of a document, both lxml objects only read the tree, so this may run while
the schema validates the same tree on another thread (see `codec.decode_element`): neither
the XPath nor the stylesheet (no keys, no generate-id, no strip-space) writes to the source
document. Run on another element (a CongestionPoint of a streamed DSOPortfolioUpdate), lxml
gives the stylesheet a document of its own by pointing the element's children at a copy of
it for the while: only where nothing else reads the tree meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from itertools import repeat
from typing import Generic, TypeVar, cast

from lxml import etree

from .messages import AGRPortfolioUpdateConnection, DSOPortfolioUpdateConnection

R = TypeVar("R", DSOPortfolioUpdateConnection, AGRPortfolioUpdateConnection)

#: The stylesheet reads nothing and writes nothing. (lxml-stubs 0.5 lacks the constant.)
_DENY_ALL: etree.XSLTAccessControl = etree.XSLTAccessControl.DENY_ALL  # type: ignore[attr-defined, unused-ignore]

_END_PERIODS_XSLT = """\
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="text" encoding="UTF-8"/>
  <xsl:template match="/">
    <xsl:for-each select="{path}">
      <xsl:value-of select="@EndPeriod"/><xsl:text>&#10;</xsl:text>
    </xsl:for-each>
  </xsl:template>
</xsl:stylesheet>
"""


class ConnectionColumns(Generic[R]):
    """The column-wise reader of the Connection elements found at `path` from the root, as
    `row`s (EntityAddress, StartPeriod, EndPeriod), dates read by `read_date`."""

    def __init__(self, path: str, row: type[R], read_date: Callable[[str], date]) -> None:
        self.path = path
        self.row: type[R] = row
        self._read_date = read_date
        self._local = threading.local()

    def _compiled(self) -> tuple[etree.XPath, etree.XSLT]:
        # An lxml XPath or XSLT object must not be shared between threads: one per thread.
        compiled: tuple[etree.XPath, etree.XSLT] | None = getattr(self._local, "compiled", None)
        if compiled is None:
            stylesheet = etree.XML(_END_PERIODS_XSLT.format(path=f"/*/{self.path}"))
            compiled = self._local.compiled = (
                etree.XPath(f"{self.path}/@*", smart_strings=False),
                etree.XSLT(stylesheet, access_control=_DENY_ALL),
            )
        return compiled

    def rows(self, root: etree._Element, total: int) -> list[R] | None:
        """The `total` connections under `root` as rows, in document order; None if the
        values do not fall into place."""
        values_of, end_periods_of = self._compiled()
        # Attribute values with smart_strings off: a list of str. The stub's return type is the
        # union of all an XPath can return (numbers, elements, ...), hence the cast.
        values = cast(list[str], values_of(root))
        with_end = len(values) - 2 * total
        ends: list[str] | None = None
        if with_end:
            if not 0 < with_end <= total:
                return None
            ends = str(end_periods_of(root)).split("\n")
            ends.pop()  # the text ends with a line end
            if len(ends) != total:
                return None
            values = _without_end_periods(values, ends)
            if len(values) != 2 * total:
                return None
        starts = values[1::2]
        read_date = self._read_date
        try:
            # Few distinct days among 100,000 periods: read each once.
            days = {text: read_date(text) for text in set(starts)}
            stops = (
                repeat(None, total)
                if ends is None
                else map({text: read_date(text) if text else None for text in set(ends)}.get, ends)
            )
        except ValueError:
            return None
        # tuple.__new__ stands in for the NamedTuple's constructor, at C speed.
        return list(
            map(
                tuple.__new__,
                repeat(self.row),
                zip(values[0::2], map(days.__getitem__, starts), stops, strict=True),
            )
        )


def _without_end_periods(values: list[str], ends: list[str]) -> list[str]:
    """`values` without the EndPeriod of each connection that has one (`ends`, one entry per
    connection, empty where there is none): EntityAddress and StartPeriod pairs, each in the
    sender's order. Whatever does not fit comes back with a length other than two per row."""
    pairs: list[str] = []
    taken = 0
    for preceding_ends, connection in enumerate(i for i, end in enumerate(ends) if end):
        begin = 2 * connection + preceding_ends
        pairs += values[taken:begin]
        own = values[begin : begin + 3]
        if ends[connection] in own:
            # The value equal to the EndPeriod is it, or an equal StartPeriod: either way the
            # two values left are the EntityAddress and the StartPeriod.
            own.remove(ends[connection])
        pairs += own
        taken = begin + 3
    pairs += values[taken:]
    return pairs


def shared_ints(texts: list[str], table: dict[str, int]) -> list[int]:
    """`texts` read as integers, one int object per distinct text across the calls that share
    `table`: a year of ISP numbers repeats 1 to 35,040 in every profile, and an int above 256
    is an object of 28 bytes each time it is made."""
    missing = set(texts).difference(table)
    table.update(zip(missing, map(int, missing), strict=True))
    return list(map(table.__getitem__, texts))
