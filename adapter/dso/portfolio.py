"""The DSO's portfolio file: one row per connection, read into a DSOPortfolioUpdate.

A DSO keeps its congestion points and their connections in a spreadsheet or exports them from
its grid administration; this module reads that export, CSV or JSON, and checks it before
anything is sent, so that a mistake is reported as `FILE:LINE: FIELD: what is wrong` to the
DSO instead of as a RejectionReason from the CRO.

Columns (CSV header, or the keys of each JSON object); the spec's attribute in brackets
(dso-portfolio-update.md):

=========================  ========  =========================================================
congestion_point           required  the congestion point's EntityAddress
connection                 required  the connection's EntityAddress
start                      required  the connection's StartPeriod, YYYY-MM-DD
end                        optional  the connection's EndPeriod (inclusive); empty = open
mutex_offers_supported     required  MutexOffersSupported: true | false (also 1 | 0)
day_ahead_redispatch_by    required  DayAheadRedispatchBy: AGR | DSO
intraday_redispatch_by     optional  IntradayRedispatchBy: AGR | DSO; empty = no intraday
cp_start                   optional  the congestion point's StartPeriod
cp_end                     optional  the congestion point's EndPeriod
=========================  ========  =========================================================

The congestion point's own StartPeriod and EndPeriod: given in cp_start / cp_end, or, where
those are empty, derived from its connections - StartPeriod the earliest connection start,
EndPeriod open if any connection is open, else the latest connection end. The derivation
yields the only periods the spec's rules allow unless the DSO wants a point that is longer
than its connections; then it gives cp_start / cp_end. (To end a point, give every connection
its end, or cp_end: contract-phase.md, "To remove a congestion point ... the EndPeriod".)

A congestion point's values (the three flags, cp_start, cp_end) are repeated on each of its
rows and must agree on all of them; a disagreement is an error naming both lines, never a
silent pick. Cells are trimmed; column names are case-insensitive; unknown columns are
errors (a typo must not silently drop a value).

CSV: UTF-8 (a byte-order mark is fine), the first non-empty line is the header, separated by
commas, or by semicolons or tabs as a spreadsheet set to a Dutch locale writes it (the
separator the header uses most). JSON: an array of objects, one per row, keys as the columns;
optional values may be omitted or null; mutex_offers_supported may be a JSON boolean.
The line of a JSON row is the line its object starts on.

Before a file is accepted it passes the rules the CRO applies to the message it becomes:
`adapter.cro.register.prepare_dso_update` with `period_violation = reject` - the period rules
of dso-portfolio-update.md and no connection twice for one day. They are not written a second
time here: the CRO's function judges the whole update, and only when it finds a problem is it
asked again per congestion point and per row, to name the line. (Two rows for one connection
whose periods overlap are caught earlier, with the CRO's `overlaps`, while the rows are
grouped, because that is where both lines are known. Rows for one connection with disjoint
periods are fine: the connection moves from one point to another, or leaves and returns.)

Connection identifiers are personal data (privacy-and-security-by-design.md): error texts name
the line and the field, never a connection's EntityAddress, so that they can be logged.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Final

from adapter.config import CroSettings, PeriodViolation
from adapter.cro.register import (
    DUPLICATE_CONNECTION,
    END_BEFORE_START,
    ENDED_IN_OPEN_POINT,
    OPEN_IN_ENDED_POINT,
    OUTSIDE_POINT_PERIOD,
    Policy,
    overlaps,
    prepare_dso_update,
)
from adapter.uftp.errors import AdapterError
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_TIME_ZONE",
    "ENTITY_ADDRESS",
    "REQUIRED_COLUMNS",
    "PortfolioFileError",
    "PortfolioRow",
    "PortfolioRuleError",
    "is_entity_address",
    "load_portfolio",
    "period_problems",
    "read_rows",
]

#: The market's time zone when none is given: the CRO's default, Europe/Amsterdam.
DEFAULT_TIME_ZONE: Final = CroSettings().time_zone

#: EntityAddressType of the UFTP schemas (3.1.0.xsd): an EA1 or an EAN address
#: (message-transport-mechanism.md, "EA1 addressing scheme"). XSD patterns are anchored and
#: their "." excludes line breaks.
ENTITY_ADDRESS: Final = re.compile(
    r"(ea1\.[0-9]{4}-[0-9]{2}\.[^\r\n]{1,244}:[^\r\n]{1,244}|ean\.[0-9]{12,34})"
)
_ADDRESS_EXPECTED = (
    "expected an EntityAddress: 'ean.' and 12 to 34 digits, or 'ea1.YYYY-MM.' + reversed "
    "domain + ':' + a local name (schema EntityAddressType)"
)

REQUIRED_COLUMNS: Final = (
    "congestion_point",
    "connection",
    "start",
    "mutex_offers_supported",
    "day_ahead_redispatch_by",
)
#: Every column, in the order a written file should use.
COLUMNS: Final = (
    "congestion_point",
    "connection",
    "start",
    "end",
    "mutex_offers_supported",
    "day_ahead_redispatch_by",
    "intraday_redispatch_by",
    "cp_start",
    "cp_end",
)
_COLUMN_SET: Final = frozenset(COLUMNS)
#: The congestion point's values, repeated on each of its rows.
_POINT_FIELDS: Final = (
    "mutex_offers_supported",
    "day_ahead_redispatch_by",
    "intraday_redispatch_by",
    "cp_start",
    "cp_end",
)

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}
_REDISPATCH: Final = {member.value: member for member in RedispatchBy}
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
#: The CRO's judgement with the default policy: every broken period rule is a reason.
_REJECTING = Policy(period_violation=PeriodViolation.REJECT)


class PortfolioFileError(AdapterError, ValueError):
    """A mistake in a portfolio file, located: `path:line: field: problem`.

    `line` is None for a problem of the whole file (unreadable, empty), `field` None for one
    of a whole row. One exception carries every problem found: the first (by line) is its
    own, the rest are in `others`, and its text lists them all, one per line, so a DSO can
    fix them all in one go.
    """

    def __init__(
        self,
        path: Path | str,
        line: int | None,
        field: str | None,
        problem: str,
        *,
        others: Sequence[PortfolioFileError] = (),
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        self.problem = problem
        self.others = tuple(others)
        super().__init__(self.text)

    @property
    def where(self) -> str:
        """`path:line: field`, as far as known."""
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.field}" if self.field else where

    @property
    def problems(self) -> tuple[PortfolioFileError, ...]:
        """This problem and the others, by line."""
        return (self, *self.others)

    @property
    def text(self) -> str:
        """Every problem, one per line: `path:line: field: problem`."""
        return "\n".join(f"{error.where}: {error.problem}" for error in self.problems)


class PortfolioRuleError(AdapterError, ValueError):
    """A DSOPortfolioUpdate breaks rules the CRO would reject it for.

    `problems` are the CRO's own reason texts (they name connections: personal data); the
    exception's text names only the rules, so that it can be logged.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        rules = "; ".join(problem.partition(": ")[0] for problem in self.problems)
        super().__init__(f"the update breaks rules of dso-portfolio-update.md: {rules}")


@dataclass(frozen=True, slots=True)
class PortfolioRow:
    """One row of the file: a connection, with its congestion point's values."""

    line: int
    congestion_point: str
    connection: str
    start: date
    end: date | None
    mutex_offers_supported: bool
    day_ahead_redispatch_by: RedispatchBy
    intraday_redispatch_by: RedispatchBy | None
    cp_start: date | None
    cp_end: date | None


def is_entity_address(text: str) -> bool:
    """Whether `text` is a schema-valid EntityAddress (EA1 or EAN)."""
    return ENTITY_ADDRESS.fullmatch(text) is not None


# --------------------------------------------------------------------------------------------
# The public entry points
# --------------------------------------------------------------------------------------------


def load_portfolio(path: Path | str, *, time_zone: str = DEFAULT_TIME_ZONE) -> DSOPortfolioUpdate:
    """The DSOPortfolioUpdate the file at `path` describes (.csv or .json), checked.

    Raises `PortfolioFileError` for any problem, including a broken period rule; the update
    returned has no metadata yet (the participant fills it when it sends).
    """
    path = Path(path)
    rows = read_rows(path)
    return _build(path, rows, time_zone)


def read_rows(path: Path | str) -> tuple[PortfolioRow, ...]:
    """The rows of the file at `path`, each field checked on its own (not yet against other
    rows or the period rules: that is `load_portfolio`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise PortfolioFileError(path, None, None, "expected a .csv or .json portfolio file")
    text = _read_text(path)
    errors = _Errors(path)
    raw = _csv_cells(path, text) if suffix == ".csv" else _json_cells(path, text)
    read: dict[_PointCells, _PointValues] = {}
    rows = [row for line, cells in raw if (row := _row(errors, line, cells, read)) is not None]
    errors.raise_if_any()
    if not rows:
        raise PortfolioFileError(path, None, None, "no rows: expected one row per connection")
    return tuple(rows)


def period_problems(update: DSOPortfolioUpdate) -> tuple[str, ...]:
    """The reasons the CRO would reject `update` for on its content alone: duplicates and
    the period rules (dso-portfolio-update.md), judged by the CRO's own
    `prepare_dso_update` with `period_violation = reject`. Empty when it passes.

    Who sends it, its TimeZone and the register's state (ownership, conflicts, order) are
    the CRO's to judge; they are not checked here.
    """
    if update.time_stamp is None:  # the CRO's function wants one; the participant sets it
        update = dataclasses.replace(update, time_stamp=datetime.now(UTC))
    return prepare_dso_update(update, update.sender_domain, _REJECTING).problems


# --------------------------------------------------------------------------------------------
# Errors, collected
# --------------------------------------------------------------------------------------------


class _Errors:
    """The problems found in one file, raised together as one `PortfolioFileError`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[tuple[int | None, str | None, str]] = []

    def add(self, line: int | None, field: str | None, problem: str) -> None:
        self.found.append((line, field, problem))

    def raise_if_any(self) -> None:
        if not self.found:
            return
        ordered = sorted(self.found, key=lambda found: found[0] or 0)
        first, *rest = (PortfolioFileError(self.path, *found) for found in ordered)
        raise PortfolioFileError(self.path, first.line, first.field, first.problem, others=rest)


# --------------------------------------------------------------------------------------------
# Reading: CSV and JSON to (line, cells)
# --------------------------------------------------------------------------------------------

Cells = Mapping[str, object]


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PortfolioFileError(path, None, None, "no such file") from None
    except IsADirectoryError:
        raise PortfolioFileError(path, None, None, "is a directory, not a file") from None
    except OSError as exc:
        raise PortfolioFileError(path, None, None, f"cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PortfolioFileError(path, line, None, "not UTF-8 text") from None


def _csv_cells(path: Path, text: str) -> Iterator[tuple[int, Cells]]:
    lines = text.splitlines()
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise PortfolioFileError(path, None, None, "empty file: expected a header line")
    header_line = lines[header_index]
    delimiter = max((",", ";", "\t"), key=header_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_at = header_index + 1
    previous = 0  # reader.line_num after the previous record: a record starts on the next
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header, header_at = _csv_header(path, line, cells), line
                continue
            if len(cells) > len(header):
                raise PortfolioFileError(
                    path,
                    line,
                    None,
                    f"{len(cells)} cells, but the header (line {header_at}) names "
                    f"{len(header)} columns",
                )
            named: dict[str, object] = {}
            for name, cell in zip(header, cells, strict=False):
                value = cell.strip()
                if not name:
                    if value:
                        raise PortfolioFileError(
                            path, line, None, "a value in a column whose header is empty"
                        )
                    continue
                named[name] = value or None
            yield line, named
    except csv.Error as exc:
        raise PortfolioFileError(path, reader.line_num, None, f"not valid CSV: {exc}") from None


def _csv_header(path: Path, line: int, cells: list[str]) -> list[str]:
    names = [cell.strip().lower() for cell in cells]
    seen: set[str] = set()
    for name in names:
        if not name:
            continue
        if name in seen:
            raise PortfolioFileError(path, line, name, "the header names this column twice")
        seen.add(name)
        _check_known(path, line, name)
    for name in REQUIRED_COLUMNS:
        if name not in seen:
            raise PortfolioFileError(
                path,
                line,
                name,
                f"missing column; the header must name {', '.join(REQUIRED_COLUMNS)}",
            )
    return names


def _check_known(path: Path, line: int, name: str) -> None:
    if name in COLUMNS:
        return
    hint = difflib.get_close_matches(name, COLUMNS, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise PortfolioFileError(
        path, line, name, f"unknown column (expected some of: {', '.join(COLUMNS)}){suggestion}"
    )


def _json_cells(path: Path, text: str) -> Iterator[tuple[int, Cells]]:
    """The array's objects one at a time (the C decoder parses each), with the line each
    starts on - which `json.loads` of the whole array could not tell."""
    decoder = json.JSONDecoder()
    counted_to, line = 0, 1

    def line_at(index: int) -> int:
        nonlocal counted_to, line
        line += text.count("\n", counted_to, index)
        counted_to = index
        return line

    def skip(index: int) -> int:
        match = _JSON_SPACE.match(text, index)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    index = skip(0)
    if index == len(text):
        raise PortfolioFileError(path, None, None, "empty file: expected a JSON array of rows")
    if text[index] != "[":
        raise PortfolioFileError(
            path, line_at(index), None, "expected a JSON array of row objects: [{...}, ...]"
        )
    index = skip(index + 1)
    closed = text.startswith("]", index)
    if closed:
        index += 1
    while not closed:
        start = line_at(index)
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise PortfolioFileError(path, exc.lineno, None, f"not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise PortfolioFileError(
                path, start, None, f"expected an object for a row, got {_json_kind(value)}"
            )
        # Usually the keys are the column names exactly; only otherwise are they normalised.
        yield start, value if _COLUMN_SET.issuperset(value) else _json_names(path, start, value)
        index = skip(index)
        if text.startswith(",", index):
            index = skip(index + 1)
        elif text.startswith("]", index):
            index, closed = index + 1, True
        else:
            raise PortfolioFileError(path, line_at(index), None, "expected ',' or ']' after a row")
    if skip(index) != len(text):
        raise PortfolioFileError(path, line_at(skip(index)), None, "extra data after the array")


def _json_names(path: Path, line: int, value: dict[str, object]) -> Cells:
    """The object with its keys trimmed and lowercased, as CSV header names are."""
    cells: dict[str, object] = {}
    for key, item in value.items():
        name = key.strip().lower()
        _check_known(path, line, name)
        cells[name] = item
    return cells


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


# --------------------------------------------------------------------------------------------
# Cells to a row
# --------------------------------------------------------------------------------------------


class _RowReader:
    """Typed access to one row's cells; each problem is recorded, not raised, so that one
    reading reports every bad field of the row."""

    def __init__(self, errors: _Errors, line: int, cells: Cells) -> None:
        self.errors = errors
        self.line = line
        self.cells = cells
        self.failed = False

    def fail(self, field: str, problem: str) -> None:
        self.failed = True
        self.errors.add(self.line, field, problem)

    def text(self, field: str, required: bool) -> str | None:
        value = self.cells.get(field)
        if isinstance(value, str):
            value = value.strip() or None
        if value is None:
            if required:
                self.fail(field, "missing value")
            return None
        if not isinstance(value, str):
            self.fail(field, f"expected a string, got {_json_kind(value)}")
            return None
        return value

    def address(self, field: str, *, shown: bool) -> str | None:
        """An EntityAddress; a connection's (`shown=False`) is personal data and not echoed."""
        value = self.text(field, required=True)
        if value is not None and not is_entity_address(value):
            self.fail(field, _ADDRESS_EXPECTED + (f", got {value!r}" if shown else ""))
            return None
        return value

    def day(self, field: str, *, required: bool) -> date | None:
        value = self.text(field, required)
        if value is None:
            return None
        try:
            return _parse_date(value)
        except ValueError:
            self.fail(field, f"expected a date YYYY-MM-DD, got {value!r}")
            return None

    def flag(self, field: str) -> bool | None:
        value = self.cells.get(field)
        if isinstance(value, bool):
            return value
        text = self.text(field, required=True)
        if text is None:
            return None
        parsed = _BOOLEANS.get(text.lower())
        if parsed is None:
            self.fail(field, f"expected true or false, got {text!r}")
        return parsed

    def redispatch(self, field: str, *, required: bool) -> RedispatchBy | None:
        value = self.text(field, required)
        if value is None:
            return None
        parsed = _REDISPATCH.get(value.upper())
        if parsed is None:
            self.fail(field, f"expected AGR or DSO, got {value!r}")
        return parsed


@lru_cache(maxsize=4096)
def _parse_date(text: str) -> date:
    """A YYYY-MM-DD date (cached: a file repeats few dates many times). Stricter than
    `date.fromisoformat`, which also takes 20260101 and 2026-W01-1."""
    if not _DATE.fullmatch(text):
        raise ValueError(text)
    return date.fromisoformat(text)


#: A congestion point's values as read from one row: mutex_offers_supported,
#: day_ahead_redispatch_by, intraday_redispatch_by, cp_start, cp_end.
_PointValues = tuple[bool, RedispatchBy, RedispatchBy | None, date | None, date | None]
#: Their cells as written, to read them once per point rather than once per row.
_PointCells = tuple[object, ...]


def _row(
    errors: _Errors, line: int, cells: Cells, read: dict[_PointCells, _PointValues]
) -> PortfolioRow | None:
    reader = _RowReader(errors, line, cells)
    congestion_point = reader.address("congestion_point", shown=True)
    connection = reader.address("connection", shown=False)
    start = reader.day("start", required=True)
    end = reader.day("end", required=False)
    written = tuple(cells.get(field) for field in _POINT_FIELDS)
    try:
        values = read.get(written)
    except TypeError:  # a JSON array or object in a cell: unhashable, and wrong anyway
        values = None
    if values is None:
        values = _point_values(reader)
        if values is not None:
            read[written] = values
    if reader.failed or values is None:
        return None
    assert congestion_point and connection and start
    return PortfolioRow(line, congestion_point, connection, start, end, *values)


def _point_values(reader: _RowReader) -> _PointValues | None:
    mutex = reader.flag("mutex_offers_supported")
    day_ahead = reader.redispatch("day_ahead_redispatch_by", required=True)
    intraday = reader.redispatch("intraday_redispatch_by", required=False)
    cp_start = reader.day("cp_start", required=False)
    cp_end = reader.day("cp_end", required=False)
    if mutex is None or day_ahead is None or reader.failed:
        return None
    return mutex, day_ahead, intraday, cp_start, cp_end


# --------------------------------------------------------------------------------------------
# Rows to the update
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Point:
    """A congestion point's rows, in file order; the first one holds its values."""

    rows: list[PortfolioRow]

    @property
    def first(self) -> PortfolioRow:
        return self.rows[0]

    def model(self) -> DSOPortfolioUpdateCongestionPoint:
        first = self.first
        ends = [row.end for row in self.rows]
        derived_end = None if None in ends else max(end for end in ends if end is not None)
        return DSOPortfolioUpdateCongestionPoint(
            entity_address=first.congestion_point,
            start_period=first.cp_start or min(row.start for row in self.rows),
            end_period=first.cp_end or derived_end,
            mutex_offers_supported=first.mutex_offers_supported,
            day_ahead_redispatch_by=first.day_ahead_redispatch_by,
            intraday_redispatch_by=first.intraday_redispatch_by,
            connections=tuple(
                DSOPortfolioUpdateConnection(row.connection, row.start, row.end)
                for row in self.rows
            ),
        )


def _build(path: Path, rows: Sequence[PortfolioRow], time_zone: str) -> DSOPortfolioUpdate:
    errors = _Errors(path)
    points: dict[str, _Point] = {}
    seen: dict[str, list[PortfolioRow]] = {}
    for row in rows:
        earlier = seen.setdefault(row.connection, [])
        clash = next((o for o in earlier if overlaps(o.start, o.end, row.start, row.end)), None)
        earlier.append(row)
        if clash is not None:
            errors.add(
                row.line,
                "connection",
                f"this connection is also on line {clash.line} for an overlapping period; the "
                f"CRO rejects a connection listed twice for one day ({DUPLICATE_CONNECTION!r})",
            )
        point = points.get(row.congestion_point)
        if point is None:
            points[row.congestion_point] = _Point([row])
            continue
        _agree(errors, point.first, row)
        point.rows.append(row)
    errors.raise_if_any()
    models = [point.model() for point in points.values()]
    update = DSOPortfolioUpdate(time_zone=time_zone, congestion_points=tuple(models))
    if period_problems(update):
        for point, model in zip(points.values(), models, strict=True):
            _locate(errors, update, point, model)
        if not errors.found:  # the CRO's function found something no single row shows
            problems = PortfolioRuleError(period_problems(update))
            errors.add(None, None, str(problems))
        errors.raise_if_any()
    return update


def _agree(errors: _Errors, first: PortfolioRow, row: PortfolioRow) -> None:
    """A congestion point's values must be the same on each of its rows."""
    for field in _POINT_FIELDS:
        mine, theirs = getattr(row, field), getattr(first, field)
        if mine != theirs:
            errors.add(
                row.line,
                field,
                f"congestion point {row.congestion_point} has {_show(theirs)} on line "
                f"{first.line} but {_show(mine)} on line {row.line}; its values must be the "
                "same on all its rows",
            )


def _show(value: object) -> str:
    if value is None:
        return "no value"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _period(start: date, end: date | None) -> str:
    return f"{start.isoformat()}..{end.isoformat() if end else 'open'}"


def _locate(
    errors: _Errors,
    update: DSOPortfolioUpdate,
    point: _Point,
    model: DSOPortfolioUpdateCongestionPoint,
) -> None:
    """Ask the CRO's rules about this point alone, then about each of its rows alone, to
    name the lines that break them. Only run when the whole update broke a rule."""

    def problems_of(*connections: DSOPortfolioUpdateConnection) -> tuple[str, ...]:
        alone = dataclasses.replace(model, connections=connections)
        return period_problems(dataclasses.replace(update, congestion_points=(alone,)))

    if not problems_of(*model.connections):
        return
    first = point.first
    period = _period(model.start_period, model.end_period)
    where = f"congestion point {model.entity_address} is {period}"
    if first.cp_start is None or first.cp_end is None:
        where += ", derived from its connections where cp_start/cp_end are empty"
    if problems_of():  # the point's own period
        field = "cp_end" if first.cp_end is not None else "cp_start"
        errors.add(first.line, field, f"{END_BEFORE_START}: {where}")
        return
    for row, connection in zip(point.rows, model.connections, strict=True):
        labels = [problem.partition(": ")[0] for problem in problems_of(connection)]
        if labels:
            rules = "; ".join(labels)
            field = _field_of(labels, connection, model)
            errors.add(row.line, field, f"{rules} (dso-portfolio-update.md): {where}")


def _field_of(
    labels: Sequence[str],
    connection: DSOPortfolioUpdateConnection,
    model: DSOPortfolioUpdateCongestionPoint,
) -> str:
    """The column to correct for the rules `labels` names: `start` when the connection starts
    outside its point, else `end` (every other period rule is about the EndPeriod)."""
    if OUTSIDE_POINT_PERIOD in labels:
        start, point_start, point_end = (
            connection.start_period,
            model.start_period,
            model.end_period,
        )
        if start < point_start or (point_end is not None and start > point_end):
            return "start"
    if END_BEFORE_START in labels or OPEN_IN_ENDED_POINT in labels or ENDED_IN_OPEN_POINT in labels:
        return "end"
    return "end" if OUTSIDE_POINT_PERIOD in labels else "connection"
