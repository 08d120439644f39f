"""What an operator sees when the deployment is wrong: one line `uftp-adapter: error: ...`
naming the file or database and what to do, exit status 2, never a traceback.

Each case is the real thing: a PostgreSQL server refusing a role or a database that does not
exist, store files written by a newer program, a Python without asyncpg, the demo started
outside the repository. The commands run as subprocesses, as an operator runs them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import tests.postgres
from adapter.keys import generate, write_private
from adapter.store import SqliteStore
from adapter.store.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from tests.test_run import copy_samples

REPOSITORY = Path(__file__).resolve().parents[1]


def uftp(
    *args: str, cwd: Path | None = None, block_asyncpg: bool = False
) -> subprocess.CompletedProcess[str]:
    """`uftp-adapter ARGS` in a fresh interpreter; with `block_asyncpg`, one in which
    `import asyncpg` fails as it does where the postgres extra is not installed."""
    prelude = "import sys; sys.modules['asyncpg'] = None; " if block_asyncpg else "import sys; "
    program = prelude + "from adapter.cli import main; sys.exit(main(sys.argv[1:]))"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=environment,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line the command printed, after checking that it failed as it should."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("uftp-adapter: error: ")
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The sample configs on free ports, with their keys."""
    folder = copy_samples(tmp_path)
    for name in ("dso", "cro"):
        write_private(tmp_path / "keys" / f"{name}.key", generate())
    return folder


def use_store(config_file: Path, store: str) -> Path:
    text = config_file.read_text("utf-8")
    lines = [
        f'store = "{store}"' if line.startswith("store = ") else line for line in text.split("\n")
    ]
    config_file.write_text("\n".join(lines), "utf-8")
    return config_file


# --------------------------------------------------------------------------------------------
# PostgreSQL: a role or database that does not exist, tables of a newer program
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def postgres() -> AsyncIterator[str]:
    """The test server's DSN, once it is known to answer."""
    yield await tests.postgres.require()


def with_user(dsn: str, user: str) -> str:
    url = urlsplit(dsn)
    host = url.hostname or "127.0.0.1"
    netloc = f"{user}@{host}" + (f":{url.port}" if url.port else "")
    return urlunsplit(url._replace(netloc=netloc))


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def test_a_postgres_role_that_does_not_exist(config: Path, postgres: str) -> None:
    role = f"uftp_nobody_{uuid.uuid4().hex[:8]}"
    dso = use_store(config / "dso.toml", with_user(postgres, role) + "?schema=uftp_cli")

    line = one_error_line(uftp("serve", "--config", str(dso)))

    assert f'role "{role}" does not exist' in line
    assert "PostgreSQL schema uftp_cli of postgresql://" in line
    assert "CREATE ROLE" in line


def test_a_postgres_database_that_does_not_exist(config: Path, postgres: str) -> None:
    database = f"uftp_nodb_{uuid.uuid4().hex[:8]}"
    dso = use_store(config / "dso.toml", with_database(postgres, database))

    line = one_error_line(uftp("serve", "--config", str(dso)))

    assert f'database "{database}" does not exist' in line
    assert "CREATE DATABASE" in line


def test_no_password_in_the_message(config: Path, postgres: str) -> None:
    url = urlsplit(postgres)
    netloc = f"uftp_nobody:hunter2@{url.hostname or '127.0.0.1'}:{url.port or 5432}"
    dso = use_store(config / "dso.toml", urlunsplit(url._replace(netloc=netloc)))

    line = one_error_line(uftp("serve", "--config", str(dso)))

    assert "hunter2" not in line
    assert "uftp_nobody:***@" in line


async def test_postgres_tables_of_a_newer_program(config: Path, postgres: str) -> None:
    import asyncpg

    from adapter.store.postgres import SCHEMA_VERSION, PostgresStore

    schema = f"test_newer_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres, schema=schema)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(postgres)
    try:
        await conn.execute(
            f"UPDATE {schema}.schema_version SET version = $1 WHERE component = 'store'",
            SCHEMA_VERSION + 1,
        )
        dso = use_store(config / "dso.toml", f"{postgres}?schema={schema}")

        result = await asyncio.to_thread(uftp, "serve", "--config", str(dso))

        line = one_error_line(result)
        assert f"PostgreSQL schema {schema} of " in line
        assert f"schema version {SCHEMA_VERSION + 1}, newer than this program's version " in line
        assert f"version {SCHEMA_VERSION}:" in line
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


# --------------------------------------------------------------------------------------------
# SQLite: tables of a newer program
# --------------------------------------------------------------------------------------------


async def bump(path: Path, component: str, version: int) -> None:
    """Create the store's tables in `path`, then mark `component` as written by a newer
    program."""
    store = SqliteStore(path)
    await store.open()
    if component == "cro_register":
        from adapter.store import register_for

        await register_for(store).congestion_points()
    await store.close()
    with sqlite3.connect(path) as conn:
        changed = conn.execute(
            "UPDATE schema_version SET version = ? WHERE component = ?", (version, component)
        ).rowcount
    conn.close()
    assert changed == 1


async def test_a_sqlite_store_of_a_newer_program(config: Path, tmp_path: Path) -> None:
    database = tmp_path / "var" / "dso.sqlite3"
    await bump(database, "store", SQLITE_SCHEMA_VERSION + 7)

    result = await asyncio.to_thread(uftp, "serve", "--config", str(config / "dso.toml"))

    line = one_error_line(result)
    assert line == (
        f"uftp-adapter: error: {database}: the store tables are schema version "
        f"{SQLITE_SCHEMA_VERSION + 7}, newer than this program's version "
        f"{SQLITE_SCHEMA_VERSION}: they were written by a newer uftp-adapter; run that "
        "version (or a later one) on this store"
    )


async def test_a_sqlite_register_of_a_newer_program(config: Path, tmp_path: Path) -> None:
    from adapter.store.register_sqlite import SCHEMA_VERSION

    database = tmp_path / "var" / "cro.sqlite3"
    await bump(database, "cro_register", SCHEMA_VERSION + 1)

    result = await asyncio.to_thread(uftp, "cro", "show", "--config", str(config / "cro.toml"))

    line = one_error_line(result)
    assert f"{database}: the Common Reference tables are schema version " in line
    assert f"newer than this program's version {SCHEMA_VERSION}:" in line


def test_a_sqlite_store_that_cannot_be_created(config: Path, tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where the store's folder should be")

    line = one_error_line(uftp("serve", "--config", str(config / "dso.toml")))

    assert line.startswith(f"uftp-adapter: error: {tmp_path / 'var'}: cannot open the SQLite")


# --------------------------------------------------------------------------------------------
# A PostgreSQL store where asyncpg is not installed
# --------------------------------------------------------------------------------------------


def test_postgres_store_without_asyncpg_says_what_to_install(config: Path) -> None:
    dso = use_store(config / "dso.toml", "postgresql://uftp@db.example.com/uftp?schema=dso")
    check = (
        "import sys; sys.modules['asyncpg'] = None; "
        "from adapter.config import load_config; "
        f"print(load_config({str(dso)!r}).participant.store)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    assert loaded.returncode == 0, loaded.stderr  # the configuration is valid as it is
    assert "PostgresStore" in loaded.stdout

    line = one_error_line(uftp("serve", "--config", str(dso), block_asyncpg=True))

    assert line == (
        "uftp-adapter: error: the store is a PostgreSQL database, but its driver (asyncpg) is "
        "not installed: pip install 'uftp-adapter[postgres]'"
    )


def test_a_bad_schema_name_is_still_a_config_error_without_asyncpg(config: Path) -> None:
    dso = use_store(config / "dso.toml", "postgresql://uftp@db.example.com/uftp?schema=Bad-Name")

    line = one_error_line(uftp("serve", "--config", str(dso), block_asyncpg=True))

    assert line.startswith(f"uftp-adapter: error: {dso}: participant.store: PostgreSQL schema")


# --------------------------------------------------------------------------------------------
# The demo outside the repository
# --------------------------------------------------------------------------------------------


def test_demo_outside_the_repository_names_the_file_and_the_option(tmp_path: Path) -> None:
    line = one_error_line(uftp("demo", cwd=tmp_path))

    assert line.startswith("uftp-adapter: error: config/dso.toml: no such file")
    assert "--config-dir" in line


def test_demo_with_a_config_dir_lacking_the_portfolio(tmp_path: Path) -> None:
    folder = copy_samples(tmp_path)
    (folder / "portfolio.csv").unlink()

    line = one_error_line(uftp("demo", "--config-dir", str(folder)))

    assert line.startswith(f"uftp-adapter: error: {folder / 'portfolio.csv'}: no such file")


# --------------------------------------------------------------------------------------------
# Keys: `serve` never creates one, and refuses one that others may read
# --------------------------------------------------------------------------------------------


def test_serve_refuses_a_missing_key_and_creates_none(config: Path, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "dso.key"
    key.unlink()

    line = one_error_line(uftp("serve", "--config", str(config / "dso.toml")))

    assert line == (
        f"uftp-adapter: error: {key}: no such key file; create one with "
        f"`uftp-adapter keys generate dso --dir {key.parent}`"
    )
    assert not key.exists()


def test_serve_refuses_a_key_others_may_read(config: Path, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "dso.key"
    key.chmod(0o644)

    line = one_error_line(uftp("serve", "--config", str(config / "dso.toml")))

    assert line.startswith(f"uftp-adapter: error: {key}: mode 0644 gives group or others")
    assert f"`chmod 600 {key}`" in line


def test_a_config_that_still_asks_to_generate_keys_says_what_to_do(config: Path) -> None:
    dso = config / "dso.toml"
    dso.write_text(
        dso.read_text("utf-8").replace("[participant]", "[participant]\ngenerate_key = true")
    )

    line = one_error_line(uftp("serve", "--config", str(dso)))

    assert line.startswith(f"uftp-adapter: error: {dso}: participant.generate_key: no longer read")
    assert "uftp-adapter keys generate dso --dir" in line


# --------------------------------------------------------------------------------------------
# A portfolio file with several mistakes
# --------------------------------------------------------------------------------------------


def test_publish_prints_every_problem_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from adapter import cli
    from tests.dso.test_portfolio_file import E2, E3, row, write_csv

    monkeypatch.chdir(tmp_path)
    path = write_csv(
        Path("."),
        row(start="2026-02-31"),
        row(connection=E2, mutex="maybe"),
        row(connection="ean.1", day_ahead="AGGREGATOR"),
        row(connection=E3, end="2026-13-01"),
        name="five",
    )

    status = cli.main(["dso", "publish", str(path), "--config", "no-config-needed.toml"])

    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == "uftp-adapter: error: five.csv: 5 problems, nothing sent:"
    assert [line.split(": ")[:2] for line in lines[1:]] == [
        ["five.csv:2", "start"],
        ["five.csv:3", "mutex_offers_supported"],
        ["five.csv:4", "connection"],
        ["five.csv:4", "day_ahead_redispatch_by"],
        ["five.csv:5", "end"],
    ]
