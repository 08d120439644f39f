"""A command that gives up waiting says what happened, and takes its message back.

`dso publish --timeout 5` with the CRO down used to say "no response within 5 s" although the
message was never delivered; the message then stayed queued for an hour and was applied by
the CRO later, without anyone being told. Now the command says it was not delivered and why
(from the outbox's attempts), and withdraws it, unless `--keep-trying` leaves it queued.

Run as an operator runs them: `python -m adapter ...` processes, configs in tmp_path.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from adapter.testing import free_port
from tests.dso.test_publish import CRO, DSO, NORTH, SAMPLE, adapter_cli, write_config
from tests.serve import serving
from tests.test_cli_send import message_file

TIMEOUT = "2"


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, int]:
    """Keys, dso.toml and cro.toml in tmp_path; the CRO's port, on which nothing listens yet."""
    for name in ("cro", "dso"):
        generated = adapter_cli("keys", "generate", name, "--dir", "keys", cwd=tmp_path)
        assert generated.returncode == 0, generated.stderr
    cro_port, dso_port = free_port(), free_port()
    write_config(tmp_path, "cro", CRO, "CRO", cro_port, (DSO, "DSO", dso_port))
    write_config(tmp_path, "dso", DSO, "DSO", dso_port, (CRO, "CRO", cro_port))
    shutil.copy(SAMPLE, tmp_path / "portfolio.csv")
    return tmp_path, cro_port


def outbound(folder: Path, name: str, message_type: str) -> list[tuple[str, int]]:
    """(status, attempts) of each message of `message_type` in the store of `name`."""
    with contextlib.closing(sqlite3.connect(folder / f"{name}.sqlite3")) as conn:
        return conn.execute(
            "SELECT status, attempts FROM outbound WHERE message_type = ?", (message_type,)
        ).fetchall()


def received(folder: Path, message_type: str) -> int:
    """How many messages of `message_type` the CRO's store received."""
    path = folder / "cro.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM inbound WHERE message_type = ?", (message_type,)
        ).fetchone()
    return int(count)


def gave_up_line(stdout: str, port: int) -> int:
    """The line that says what happened; the number of attempts it reports."""
    pattern = (
        rf"not delivered to {re.escape(CRO)} within {TIMEOUT} s: connection refused "
        rf"\(127\.0\.0\.1:{port}\), (\d+) attempts?; withdrawn, it will not be sent "
        r"\(--keep-trying leaves it queued\)"
    )
    match = re.fullmatch(pattern, stdout.splitlines()[-1])
    assert match, stdout
    return int(match[1])


async def test_publish_to_a_cro_that_is_down_says_so_and_withdraws_the_update(
    site: tuple[Path, int],
) -> None:
    folder, cro_port = site

    result = adapter_cli(
        "dso", "publish", "portfolio.csv", "--config", "dso.toml", "--timeout", TIMEOUT, cwd=folder
    )

    assert result.returncode == 2, result.stdout + result.stderr
    attempts = gave_up_line(result.stdout, cro_port)
    assert attempts >= 1
    assert outbound(folder, "dso", "DSOPortfolioUpdate") == [("cancelled", attempts)]
    assert "Traceback" not in result.stderr

    # The CRO comes back, and the DSO runs again: the withdrawn update is not delivered.
    async with serving(folder / "cro.toml"):
        query = adapter_cli(
            "dso", "query", NORTH, "--date", "2026-03-01", "--config", "dso.toml", cwd=folder
        )
        assert query.returncode == 1, query.stdout + query.stderr  # an unknown point
        assert "Invalid CongestionPoint" in query.stdout
    assert received(folder, "DSOPortfolioUpdate") == 0
    assert outbound(folder, "dso", "DSOPortfolioUpdate") == [("cancelled", attempts)]


async def test_keep_trying_leaves_the_update_queued_for_the_next_run(
    site: tuple[Path, int],
) -> None:
    folder, cro_port = site

    result = adapter_cli(
        "dso",
        "publish",
        "portfolio.csv",
        "--config",
        "dso.toml",
        "--timeout",
        TIMEOUT,
        "--keep-trying",
        cwd=folder,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"not delivered to {CRO} within {TIMEOUT} s: connection refused")
    assert "still queued: delivered when this participant next runs, until " in last
    [(status, _)] = outbound(folder, "dso", "DSOPortfolioUpdate")
    assert status == "pending"

    # The next run of the DSO delivers it, and the CRO applies it.
    async with serving(folder / "cro.toml"):
        query = adapter_cli(
            "dso", "query", NORTH, "--date", "2026-03-01", "--config", "dso.toml", cwd=folder
        )
    assert received(folder, "DSOPortfolioUpdate") == 1
    assert outbound(folder, "dso", "DSOPortfolioUpdate")[0][0] == "delivered"
    assert query.returncode in (0, 1), query.stdout + query.stderr


@pytest.mark.parametrize("command", ["send", "dso query"])
def test_send_and_query_give_up_the_same_way(
    site: tuple[Path, int], command: str, tmp_path: Path
) -> None:
    folder, cro_port = site
    if command == "send":
        kind = "DSOPortfolioUpdate"
        args = ["send", "--to", CRO, str(message_file(tmp_path))]
    else:
        kind = "DSOPortfolioQuery"
        args = ["dso", "query", NORTH, "--date", "2026-03-01"]

    result = adapter_cli(*args, "--config", "dso.toml", "--timeout", TIMEOUT, cwd=folder)

    assert result.returncode == 2, result.stdout + result.stderr
    attempts = gave_up_line(result.stdout, cro_port)
    assert outbound(folder, "dso", kind) == [("cancelled", attempts)]
