"""The test PostgreSQL, for every test that needs one: connect, or skip, or fail.

`UFTP_TEST_POSTGRES_DSN` names the server (default postgresql://127.0.0.1:5432/test). When it
cannot be reached a test that needs it skips, with the reason and how to make it count, unless
the variable is given explicitly (`scripts/test.sh`, the README's test command, which CI runs
through `.ci/run`, always gives it) or CI is set (CI=true): then it fails, so that CI cannot
pass by skipping PostgreSQL (the rule of tests/bus/conftest.py for the brokers).

`connect()` is the one place that decides; `fresh_schema()` gives a schema of the test's own,
dropped afterwards, and the `postgres_schema` fixture of tests/conftest.py is that for a whole
test. asyncpg is imported only here and when needed, so that modules without PostgreSQL tests
do not need it.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

VARIABLE = "UFTP_TEST_POSTGRES_DSN"
PG_DSN = os.environ.get(VARIABLE, "postgresql://127.0.0.1:5432/test")
#: Whether a test that needs the server must fail rather than skip without it.
PG_REQUIRED = VARIABLE in os.environ or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def dsn_with_schema(schema: str, dsn: str = PG_DSN) -> str:
    """`dsn` with `?schema=` (or `&schema=`) added, as the store URLs of a configuration."""
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


def unreachable(exc: BaseException) -> NoReturn:
    """Skip, or fail where the server is required, for want of the test PostgreSQL."""
    problem = f"no PostgreSQL at {PG_DSN}: {type(exc).__name__}: {exc}"
    if PG_REQUIRED:
        pytest.fail(f"{problem}; {VARIABLE} or CI is set, so this test may not skip", pytrace=False)
    pytest.skip(f"{problem} (start one, or set {VARIABLE}; with it or CI=true this fails)")


def import_asyncpg() -> Any:
    """asyncpg, for a test (or, at module level, a module) that needs it: skips without it,
    unless the server is required (`PG_REQUIRED`): then its ImportError fails, so that CI
    cannot pass by skipping PostgreSQL for want of the driver either."""
    if PG_REQUIRED:
        return importlib.import_module("asyncpg")
    return pytest.importorskip("asyncpg")


async def connect() -> Any:
    """A connection to the test server (asyncpg), the caller to close; skips or fails the
    test when there is none."""
    asyncpg = import_asyncpg()
    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unreachable(exc)


async def require() -> str:
    """The test server's DSN, once it is known to answer; skips or fails the test otherwise."""
    probe = await connect()
    await probe.close()
    return PG_DSN


@dataclass(frozen=True)
class Schema:
    """A schema of one test's own on the test server, and a connection to work on it with."""

    name: str
    #: asyncpg connection to the server, open while the schema exists.
    admin: Any

    @property
    def dsn(self) -> str:
        """The server's DSN naming this schema, as a configuration's store URL."""
        return dsn_with_schema(self.name)


@asynccontextmanager
async def fresh_schema(prefix: str = "test") -> AsyncIterator[Schema]:
    """A schema name nobody uses yet (`prefix_` and 12 hex digits), dropped with everything in
    it when the block ends; skips or fails the test without a server. The schema itself is
    created by whoever opens a store on it."""
    admin = await connect()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield Schema(name, admin)
    finally:
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await admin.close()
