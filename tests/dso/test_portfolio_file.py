"""The portfolio file: every mistake located as file:line: field, CSV and JSON alike, and the
CRO's own period rules applied before anything is sent.

Real files in tmp_path; the sample files in config/ are read as a user would.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

import adapter
from adapter.cro.register import (
    DUPLICATE_CONNECTION,
    END_BEFORE_START,
    ENDED_IN_OPEN_POINT,
    OPEN_IN_ENDED_POINT,
    OUTSIDE_POINT_PERIOD,
    Policy,
    prepare_dso_update,
)
from adapter.dso.portfolio import (
    COLUMNS,
    ENTITY_ADDRESS,
    PortfolioFileError,
    PortfolioRuleError,
    load_portfolio,
    period_problems,
)
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    RedispatchBy,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"
CP1 = "ea1.2026-01.test.uftp-demo:cp-north"
CP2 = "ea1.2026-01.test.uftp-demo:cp-south"
E1, E2, E3 = (f"ean.8716859000000000{n:02d}" for n in (11, 28, 35))
JAN, MAR, JUN, DEC = date(2026, 1, 1), date(2026, 3, 1), date(2026, 6, 1), date(2026, 12, 31)
HEADER = ",".join(COLUMNS)


def row(
    cp: str = CP1,
    connection: str = E1,
    start: str = "2026-01-01",
    end: str = "",
    mutex: str = "true",
    day_ahead: str = "DSO",
    intraday: str = "",
    cp_start: str = "",
    cp_end: str = "",
) -> dict[str, str]:
    return dict(
        zip(
            COLUMNS,
            (cp, connection, start, end, mutex, day_ahead, intraday, cp_start, cp_end),
            strict=True,
        )
    )


def write_csv(folder: Path, *rows: dict[str, str], header: str = HEADER, name: str = "p") -> Path:
    path = folder / f"{name}.csv"
    columns = header.split(",")
    lines = [header, *(",".join(r.get(c, "") for c in columns) for r in rows)]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def write_json(folder: Path, *rows: Mapping[str, object], name: str = "p") -> Path:
    """One object per line, starting on line 2: row N is on line N + 1, as in the CSV."""
    path = folder / f"{name}.json"
    objects = [{k: v for k, v in r.items() if v != ""} for r in rows]
    path.write_text("[\n" + ",\n".join(json.dumps(o) for o in objects) + "\n]\n", "utf-8")
    return path


def error_of(path: Path) -> PortfolioFileError:
    with pytest.raises(PortfolioFileError) as caught:
        load_portfolio(path)
    return caught.value


def assert_located(
    error: PortfolioFileError, path: Path, line: int | None, field: str | None
) -> None:
    assert (error.path, error.line, error.field) == (path, line, field), str(error)
    where = f"{path}:{line}" if line is not None else str(path)
    assert str(error).startswith(f"{where}: {field}: " if field else f"{where}: ")


# --- what a good file becomes ----------------------------------------------------------------


def test_sample_files_are_the_same_portfolio() -> None:
    from_csv = load_portfolio(CONFIG / "portfolio.csv")
    from_json = load_portfolio(CONFIG / "portfolio.json")
    assert from_csv == from_json
    assert period_problems(from_csv) == ()
    points = {p.entity_address: p for p in from_csv.congestion_points}
    assert len(points) >= 2
    assert all(p.entity_address.startswith("ea1.2026-01.test.uftp-demo:") for p in points.values())
    assert all(c.entity_address.startswith("ean.") for p in points.values() for c in p.connections)
    assert from_csv.time_zone == "Europe/Amsterdam"
    assert from_csv.message_id == "" and from_csv.time_stamp is None  # filled when sent


def test_rows_become_congestion_points_in_file_order(tmp_path: Path) -> None:
    rows = (
        row(CP1, E1, "2026-01-01", intraday="AGR"),
        row(CP2, E3, "2026-03-01", "2026-06-30", mutex="false", day_ahead="AGR"),
        row(CP1, E2, "2026-03-01", intraday="AGR"),
    )
    update = load_portfolio(write_csv(tmp_path, *rows), time_zone="Europe/Brussels")
    assert update == DSOPortfolioUpdate(
        time_zone="Europe/Brussels",
        congestion_points=(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=CP1,
                start_period=JAN,  # derived: the earliest connection start
                end_period=None,  # derived: a connection is open-ended
                mutex_offers_supported=True,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.AGR,
                connections=(
                    DSOPortfolioUpdateConnection(E1, JAN),
                    DSOPortfolioUpdateConnection(E2, MAR),
                ),
            ),
            DSOPortfolioUpdateCongestionPoint(
                entity_address=CP2,
                start_period=MAR,
                end_period=date(2026, 6, 30),  # derived: the latest end, all ended
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.AGR,
                intraday_redispatch_by=None,
                connections=(DSOPortfolioUpdateConnection(E3, MAR, date(2026, 6, 30)),),
            ),
        ),
    )


def test_cp_start_and_cp_end_set_the_points_own_period(tmp_path: Path) -> None:
    rows = (
        row(CP1, E1, "2026-03-01", "2026-06-01", cp_start="2026-01-01", cp_end="2026-12-31"),
        row(CP1, E2, "2026-06-01", "2026-12-31", cp_start="2026-01-01", cp_end="2026-12-31"),
    )
    (point,) = load_portfolio(write_csv(tmp_path, *rows)).congestion_points
    assert (point.start_period, point.end_period) == (JAN, DEC)


@pytest.mark.parametrize(
    "rows",
    [
        (row(),),
        (row(intraday="DSO"), row(connection=E2, start="2026-03-01", intraday="DSO")),
        (
            row(CP1, E1, "2026-01-01", "2026-12-31", mutex="false", cp_end="2026-12-31"),
            row(CP2, E2, "2026-06-01", day_ahead="AGR", intraday="AGR", cp_start="2026-01-01"),
            row(CP2, E3, day_ahead="AGR", intraday="AGR", cp_start="2026-01-01"),
        ),
    ],
)
def test_csv_and_json_give_equal_models(tmp_path: Path, rows: tuple[dict[str, str], ...]) -> None:
    as_json = [{**r, "mutex_offers_supported": r["mutex_offers_supported"] == "true"} for r in rows]
    assert load_portfolio(write_csv(tmp_path, *rows)) == load_portfolio(
        write_json(tmp_path, *as_json)
    )


def test_csv_as_spreadsheets_write_it(tmp_path: Path) -> None:
    """Semicolons, a byte-order mark, CRLF, blank lines, padded cells, capitalised names."""
    path = tmp_path / "excel.csv"
    text = (
        "\ufeffCongestion_Point;Connection;Start;Mutex_Offers_Supported;Day_Ahead_Redispatch_By\r\n"
        "\r\n"
        f" {CP1} ; {E1} ; 2026-01-01 ; TRUE ; dso \r\n"
        f"{CP1};{E2};2026-03-01;1;DSO\r\n"
    )
    path.write_text(text, "utf-8", newline="")
    expected = load_portfolio(write_csv(tmp_path, row(), row(connection=E2, start="2026-03-01")))
    assert load_portfolio(path) == expected


def test_the_pre_check_is_the_cros_own_judgement() -> None:
    """`period_problems` is `prepare_dso_update` with period_violation = reject: the same
    texts, in the same order, as the CRO's rejection would carry."""
    update = DSOPortfolioUpdate(
        time_zone="Europe/Amsterdam",
        congestion_points=(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=CP1,
                start_period=MAR,
                end_period=DEC,
                mutex_offers_supported=True,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                connections=(
                    DSOPortfolioUpdateConnection(E1, JAN, JUN),
                    DSOPortfolioUpdateConnection(E2, MAR),
                    DSOPortfolioUpdateConnection(E3, JUN, MAR),
                ),
            ),
        ),
    )
    stamped = dataclasses.replace(update, time_stamp=datetime.now(UTC))
    problems = period_problems(update)
    assert problems == prepare_dso_update(stamped, "dso.example.com", Policy()).problems
    assert [p.partition(": ")[0] for p in problems] == [
        END_BEFORE_START,
        OUTSIDE_POINT_PERIOD,
        OPEN_IN_ENDED_POINT,
    ]
    error = PortfolioRuleError(problems)
    assert error.problems == problems
    assert E1 not in str(error) and OUTSIDE_POINT_PERIOD in str(error)


def test_entity_address_is_the_schemas_pattern() -> None:
    """Copied from the XSD, with XSD's '.' (no line breaks) spelled out for Python."""
    schemas = Path(adapter.__file__).parent / "uftp" / "schemas"
    namespaces = {"xs": "http://www.w3.org/2001/XMLSchema"}
    for name in ("3.1.0.xsd", "4.0.0.xsd"):
        tree = etree.parse(str(schemas / name))
        (pattern,) = tree.xpath(
            "//xs:simpleType[@name='EntityAddressType']//xs:pattern/@value", namespaces=namespaces
        )
        assert ENTITY_ADDRESS.pattern == pattern.replace(".{1,244}", "[^\\r\\n]{1,244}")


# --- the file and its header -----------------------------------------------------------------


def test_missing_column(tmp_path: Path) -> None:
    header = "congestion_point,connection,mutex_offers_supported,day_ahead_redispatch_by"
    path = write_csv(tmp_path, row(), header=header)
    error = error_of(path)
    assert_located(error, path, 1, "start")
    assert "missing column" in error.problem


def test_missing_key_in_a_json_row(tmp_path: Path) -> None:
    without_start = {k: v for k, v in row(connection=E2).items() if k != "start"}
    path = write_json(tmp_path, row(), without_start)
    error = error_of(path)
    assert_located(error, path, 3, "start")
    assert error.problem == "missing value"


def test_unknown_column_suggests_the_right_one(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path, row(), header=HEADER.replace("intraday_redispatch_by", "intraday_redispach_by")
    )
    error = error_of(path)
    assert_located(error, path, 1, "intraday_redispach_by")
    assert "did you mean 'intraday_redispatch_by'?" in error.problem
    path = write_json(tmp_path, {**row(), "stat": "2026-01-01"})
    assert_located(error_of(path), path, 2, "stat")


def test_column_named_twice(tmp_path: Path) -> None:
    path = write_csv(tmp_path, row(), header=HEADER + ",start")
    assert_located(error_of(path), path, 1, "start")


def test_row_with_more_cells_than_the_header(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(f"{HEADER}\n{','.join(row().values())},extra\n", "utf-8")
    error = error_of(path)
    assert_located(error, path, 2, None)
    assert "10 cells, but the header (line 1) names 9 columns" in error.problem


@pytest.mark.parametrize(
    ("name", "content", "line", "problem"),
    [
        ("p.csv", "", None, "empty file"),
        ("p.csv", "\n\n", None, "empty file"),
        ("p.csv", HEADER + "\n", None, "no rows"),
        ("p.json", "[]", None, "no rows"),
        ("p.json", "  ", None, "empty file"),
        ("p.json", '{"rows": []}', 1, "expected a JSON array"),
        ("p.json", '[\n{"start": "2026-01-01",\n}\n]', 3, "not valid JSON"),
        ("p.json", '[\n["a", "b"]\n]', 2, "expected an object for a row, got an array"),
        ("p.json", "[\n{}\n{}]", 3, "expected ',' or ']' after a row"),
        ("p.json", "[]\n[]", 2, "extra data after the array"),
        ("p.txt", "anything", None, "expected a .csv or .json portfolio file"),
    ],
)
def test_file_level_mistakes(
    tmp_path: Path, name: str, content: str, line: int | None, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(content, "utf-8")
    error = error_of(path)
    assert_located(error, path, line, None)
    assert problem in error.problem


def test_missing_file_and_not_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    assert_located(error_of(missing), missing, None, None)
    assert "no such file" in str(error_of(missing))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"{HEADER}\n".encode() + b"ea1.2026-01.test.caf\xe9:cp,,,,,,,,\n")
    error = error_of(latin)
    assert_located(error, latin, 2, None)
    assert "not UTF-8" in error.problem


def test_bad_csv_quoting(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(f'{HEADER}\n{CP1},"{E1}"x,2026-01-01,,true,DSO,,,\n', "utf-8")
    error = error_of(path)
    assert_located(error, path, 2, None)
    assert "not valid CSV" in error.problem


# --- fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["2026-13-01", "20260101", "01-03-2026", "2026-02-30", "tomorrow"])
def test_bad_date(tmp_path: Path, bad: str) -> None:
    path = write_csv(tmp_path, row(), row(connection=E2, start=bad))
    error = error_of(path)
    assert_located(error, path, 3, "start")
    assert error.problem == f"expected a date YYYY-MM-DD, got {bad!r}"


@pytest.mark.parametrize("field", ["end", "cp_start", "cp_end"])
def test_bad_optional_date(tmp_path: Path, field: str) -> None:
    path = write_csv(tmp_path, {**row(), field: "2026-1-1"})
    assert_located(error_of(path), path, 2, field)


@pytest.mark.parametrize(
    "bad",
    ["ean.12345678901", "ean.8716859000000000AB", "EAN.871685900000000011", "871685900000000011"],
)
def test_bad_ean_is_not_echoed(tmp_path: Path, bad: str) -> None:
    """A connection's identifier is personal data: the error names line and field only."""
    path = write_csv(tmp_path, row(connection=bad))
    error = error_of(path)
    assert_located(error, path, 2, "connection")
    assert "EntityAddressType" in error.problem
    assert bad not in str(error)


@pytest.mark.parametrize(
    "bad",
    ["ea1.2026-1.test.uftp-demo:cp", "ea1.2026-01.test.uftp-demo", "ea2.2026-01.x:cp", "cp-north"],
)
def test_bad_ea1(tmp_path: Path, bad: str) -> None:
    path = write_csv(tmp_path, row(cp=bad))
    error = error_of(path)
    assert_located(error, path, 2, "congestion_point")
    assert error.problem.endswith(f"got {bad!r}")


def test_an_ean_congestion_point_is_fine(tmp_path: Path) -> None:
    """The schema allows either scheme for any EntityAddress."""
    path = write_csv(tmp_path, row(cp="ean.871685999999999999"))
    assert load_portfolio(path).congestion_points[0].entity_address == "ean.871685999999999999"


@pytest.mark.parametrize(
    ("field", "bad", "problem"),
    [
        ("mutex_offers_supported", "yes", "expected true or false, got 'yes'"),
        ("mutex_offers_supported", "", "missing value"),
        ("day_ahead_redispatch_by", "CRO", "expected AGR or DSO, got 'CRO'"),
        ("day_ahead_redispatch_by", "", "missing value"),
        ("intraday_redispatch_by", "both", "expected AGR or DSO, got 'both'"),
        ("congestion_point", "", "missing value"),
        ("connection", "", "missing value"),
    ],
)
def test_bad_field(tmp_path: Path, field: str, bad: str, problem: str) -> None:
    path = write_csv(tmp_path, {**row(), field: bad})
    error = error_of(path)
    assert_located(error, path, 2, field)
    assert error.problem == problem


def test_json_values_of_the_wrong_type(tmp_path: Path) -> None:
    path = write_json(tmp_path, {**row(), "connection": 871685900000000011})
    error = error_of(path)
    assert_located(error, path, 2, "connection")
    assert error.problem == "expected a string, got a number"
    path = write_json(tmp_path, {**row(), "intraday_redispatch_by": None, "end": None})
    assert load_portfolio(path) == load_portfolio(write_csv(tmp_path, row()))


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        row(start="2026-02-31"),
        row(connection=E2),
        row(connection="ean.1", mutex="maybe"),
    )
    error = error_of(path)
    assert_located(error, path, 2, "start")
    assert [(e.line, e.field) for e in error.others] == [
        (4, "connection"),
        (4, "mutex_offers_supported"),
    ]
    lines = str(error).splitlines()  # every one, so that all are fixed in one go
    assert lines == [f"{e.where}: {e.problem}" for e in error.problems]
    assert [line.split(": ")[:2] for line in lines] == [
        [f"{path}:2", "start"],
        [f"{path}:4", "connection"],
        [f"{path}:4", "mutex_offers_supported"],
    ]


def test_line_numbers_count_multi_line_cells(tmp_path: Path) -> None:
    """A quoted cell may hold a line break; the rows after it keep their true line numbers."""
    path = tmp_path / "p.csv"
    path.write_text(
        f'{HEADER}\n{CP1},{E1},2026-01-01,"",true,DSO,,,\n'
        f'{CP1},{E2},"2026-01-01\nx",,true,DSO,,,\n'
        f"{CP1},{E3},2026-99-01,,true,DSO,,,\n",
        "utf-8",
    )
    error = error_of(path)
    assert [(e.line, e.field) for e in (error, *error.others)] == [(3, "start"), (5, "start")]


# --- rows against each other -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("mutex_offers_supported", "false", "false"),
        ("day_ahead_redispatch_by", "AGR", "AGR"),
        ("intraday_redispatch_by", "DSO", "DSO"),
        ("cp_start", "2026-01-01", "2026-01-01"),
        ("cp_end", "2026-12-31", "2026-12-31"),
    ],
)
def test_a_congestion_points_values_must_agree(
    tmp_path: Path, field: str, value: str, shown: str
) -> None:
    path = write_csv(tmp_path, row(), row(CP2, E3), {**row(connection=E2), field: value})
    error = error_of(path)
    assert_located(error, path, 4, field)
    assert f"{CP1} has " in error.problem
    assert f"on line 2 but {shown} on line 4" in error.problem


def test_duplicate_connection(tmp_path: Path) -> None:
    path = write_csv(tmp_path, row(CP1, E1), row(CP2, E2), row(CP2, E1))
    error = error_of(path)
    assert_located(error, path, 4, "connection")
    assert "also on line 2" in error.problem and DUPLICATE_CONNECTION in error.problem
    assert E1 not in str(error)
    json_path = write_json(tmp_path, row(CP1, E1), row(CP2, E2), row(CP2, E1))
    assert_located(error_of(json_path), json_path, 4, "connection")


# --- the CRO's period rules, before sending ----------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "line", "field", "rule"),
    [
        # a connection whose EndPeriod is before its StartPeriod
        (
            (row(), row(connection=E2, start="2026-06-01", end="2026-03-01")),
            3,
            "end",
            END_BEFORE_START,
        ),
        # the congestion point's own period reversed
        (
            (
                row(
                    start="2026-06-01", end="2026-06-30", cp_start="2026-06-01", cp_end="2026-03-01"
                ),
            ),
            2,
            "cp_end",
            END_BEFORE_START,
        ),
        # a connection starting before its point
        ((row(start="2025-12-01", cp_start="2026-01-01"),), 2, "start", OUTSIDE_POINT_PERIOD),
        # a connection starting after its point ended
        (
            (
                row(
                    start="2027-01-01", end="2027-02-01", cp_start="2026-01-01", cp_end="2026-12-31"
                ),
            ),
            2,
            "start",
            OUTSIDE_POINT_PERIOD,
        ),
        # a connection ending after its point
        (
            (row(start="2026-01-01", end="2027-02-01", cp_end="2026-12-31"),),
            2,
            "end",
            OUTSIDE_POINT_PERIOD,
        ),
        # an open-ended connection in a point that ends
        (
            (row(end="2026-12-31", cp_end="2026-12-31"), row(connection=E2, cp_end="2026-12-31")),
            3,
            "end",
            OPEN_IN_ENDED_POINT,
        ),
        # an ended connection in a point left open (derived: another connection is open)
        ((row(), row(connection=E2, end="2026-06-30")), 3, "end", ENDED_IN_OPEN_POINT),
    ],
)
def test_period_rules_are_found_before_sending(
    tmp_path: Path, rows: tuple[dict[str, str], ...], line: int, field: str, rule: str
) -> None:
    path = write_csv(tmp_path, *rows)
    error = error_of(path)
    assert_located(error, path, line, field)
    assert rule in error.problem
    assert "dso-portfolio-update.md" in error.problem or rule == END_BEFORE_START
    assert not any(e in str(error) for e in (E1, E2))
    # The CRO's function finds the same rule in the same update.
    as_json = [{**r, "mutex_offers_supported": True} for r in rows]
    assert_located(error_of(write_json(tmp_path, *as_json)), tmp_path / "p.json", line, field)


def test_derived_periods_are_explained(tmp_path: Path) -> None:
    path = write_csv(tmp_path, row(), row(connection=E2, end="2026-06-30"))
    error = error_of(path)
    assert error.problem == (
        f"{ENDED_IN_OPEN_POINT} (dso-portfolio-update.md): congestion point {CP1} is "
        "2026-01-01..open, derived from its connections where cp_start/cp_end are empty"
    )


def test_every_broken_row_is_named(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        row(CP1, E1, cp_end="2026-12-31", end="2026-12-31"),
        row(CP1, E2, cp_end="2026-12-31"),
        row(CP2, E3, start="2025-01-01", cp_start="2026-01-01"),
    )
    error = error_of(path)
    assert [(e.line, e.field) for e in (error, *error.others)] == [(3, "end"), (4, "start")]


# --- a connection moving between congestion points ----------------------------------------------

CP_A = "ea1.2026-01.test.uftp-demo:cp-a"
CP_B = "ea1.2026-01.test.uftp-demo:cp-b"
MOVING = "ean.871685901000112"


def moving_rows(cp_b_start: str = "2028-07-01") -> tuple[dict[str, str], ...]:
    """The connection in cp-a for the first half of 2028 and in cp-b from cp_b_start."""
    return (
        row(CP_A, MOVING, "2028-01-01", "2028-06-30"),
        row(CP_A, E2, "2028-01-01", "2028-06-30"),
        row(CP_B, MOVING, cp_b_start),
    )


@pytest.mark.parametrize("write", [write_csv, write_json], ids=["csv", "json"])
def test_a_connection_moving_between_points_is_one_update(tmp_path: Path, write: object) -> None:
    """Each row is a membership with its own period (dso-portfolio-update.md: "The first
    Period that the Connection is part of this CongestionPoint"): two rows for a connection
    with disjoint periods are a move, which the CRO accepts in one update."""
    update = load_portfolio(write(tmp_path, *moving_rows()))  # type: ignore[operator]
    cp_a, cp_b = update.congestion_points
    assert (cp_a.entity_address, cp_a.start_period, cp_a.end_period) == (
        CP_A,
        date(2028, 1, 1),
        date(2028, 6, 30),
    )
    assert (cp_b.entity_address, cp_b.start_period, cp_b.end_period) == (
        CP_B,
        date(2028, 7, 1),
        None,
    )
    assert cp_b.connections == (DSOPortfolioUpdateConnection(MOVING, date(2028, 7, 1)),)
    assert period_problems(update) == ()


def test_a_connection_leaving_a_point_and_returning(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        row(CP1, E1, "2026-01-01", "2026-03-31", cp_end="2026-12-31"),
        row(CP1, E1, "2026-06-01", "2026-12-31", cp_end="2026-12-31"),
        row(CP2, E1, "2026-04-01", "2026-05-31"),
    )
    [cp1, cp2] = load_portfolio(path).congestion_points
    assert [c.start_period for c in cp1.connections] == [JAN, JUN]
    assert cp2.end_period == date(2026, 5, 31)


@pytest.mark.parametrize("cp_b_start", ["2028-06-30", "2028-03-01", "2028-01-01"])
def test_a_connection_in_two_points_for_one_day_is_located(tmp_path: Path, cp_b_start: str) -> None:
    path = write_csv(tmp_path, *moving_rows(cp_b_start))
    error = error_of(path)
    assert_located(error, path, 4, "connection")
    assert "also on line 2 for an overlapping period" in error.problem
    assert DUPLICATE_CONNECTION in error.problem and MOVING not in str(error)


def test_dso_publish_refuses_overlapping_rows_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adapter.cli import main

    path = write_csv(tmp_path, *moving_rows("2028-06-30"))
    # No configuration is read: the file is refused first, as a user's mistake (status 2).
    status = main(["dso", "publish", str(path), "--config", str(tmp_path / "none.toml")])
    assert status == 2
    assert f"{path}:4: connection: this connection is also on line 2" in capsys.readouterr().err
