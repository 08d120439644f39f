"""Durable state behind the `Store` port, and `open_store` to pick an implementation by URL.

`PostgresStore` is not imported here: it needs the optional asyncpg dependency (the
``postgres`` extra), which an embedded SQLite deployment does not install. Import it from
`adapter.store.postgres`, or let `open_store` do so for a ``postgresql://`` URL. Checking a
URL (`check_store_url`, what the configuration does) never imports the driver, so that a
missing driver is reported where the store is needed, with the command that installs it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from adapter.store.base import (
    DEFAULT_LEASE,
    DeliveryAttempt,
    InboundRecord,
    InboundStatus,
    OutboundRecord,
    OutboundStatus,
    SaveOutcome,
    StorageError,
    Store,
    StoreOpenError,
)
from adapter.store.sqlite import SqliteStore

__all__ = [
    "DEFAULT_LEASE",
    "DeliveryAttempt",
    "InboundRecord",
    "InboundStatus",
    "OutboundRecord",
    "OutboundStatus",
    "SaveOutcome",
    "SqliteStore",
    "StorageError",
    "Store",
    "StoreOpenError",
    "check_schema_name",
    "check_store_url",
    "open_store",
    "redact_dsn",
]

_EXPECTED = "expected 'sqlite:PATH' or 'postgresql://...[?schema=NAME]'"

#: PostgreSQL schema names we accept: plain lower-case identifiers, so they never need quoting.
POSTGRES_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

#: What installs the PostgreSQL driver, for the message that says it is missing.
POSTGRES_EXTRA = "pip install 'uftp-adapter[postgres]'"


def check_schema_name(schema: str) -> None:
    """Raise ValueError unless `schema` is a PostgreSQL schema name we accept."""
    if not POSTGRES_SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"PostgreSQL schema name {schema!r}: use lower-case letters, digits and '_' "
            "(at most 63, not starting with a digit)"
        )


def redact_dsn(dsn: str) -> str:
    """`dsn` without its password (in the user part or a ``password=`` parameter), for
    messages: it is what the operator wrote in the configuration, so they recognise it."""
    dsn = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", dsn)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", dsn)


def check_store_url(url: str) -> None:
    """Raise ValueError if `open_store` would refuse `url`; imports no driver, opens nothing.

    For checking a configuration: a PostgreSQL URL is valid whether or not asyncpg is
    installed here (the configuration may be checked on another machine than it runs on).
    """
    _parse(url, None)


def open_store(
    url: str,
    *,
    base_dir: Path | None = None,
    exclusive: bool = True,
    lease: timedelta = DEFAULT_LEASE,
) -> Store:
    """The store a URL names, not yet opened: call ``await store.open()`` before use.

    ``sqlite:PATH`` is a SQLite file; a relative PATH is relative to `base_dir` (the current
    directory if None). ``postgresql://...`` or ``postgres://...`` is a PostgreSQL DSN as
    asyncpg takes it, plus an optional ``schema=NAME`` query parameter (default ``uftp``) that
    is ours and removed before the DSN reaches asyncpg. Anything else is a ValueError, whose
    message never repeats a password.

    `exclusive` False opens a SQLite file without taking it for this process, for a tool that
    only reads beside a running participant (a PostgreSQL store is shared anyway). `lease` is
    how long the store's claims last unless renewed.
    """
    parsed = _parse(url, base_dir)
    if isinstance(parsed, Path):
        return SqliteStore(parsed, exclusive=exclusive, lease=lease)
    dsn, schema = parsed
    try:
        from adapter.store.postgres import PostgresStore  # here: asyncpg is optional
    except ModuleNotFoundError as exc:
        if exc.name != "asyncpg":
            raise
        raise StoreOpenError(
            "the store is a PostgreSQL database, but its driver (asyncpg) is not installed: "
            + POSTGRES_EXTRA
        ) from None
    if schema is None:
        return PostgresStore(dsn, lease=lease)
    return PostgresStore(dsn, schema=schema, lease=lease)


def _parse(url: str, base_dir: Path | None) -> Path | tuple[str, str | None]:
    """A SQLite file, or a PostgreSQL DSN (without our parameter) and schema name."""
    if url.startswith("sqlite:"):
        return _sqlite_path(url.removeprefix("sqlite:"), base_dir)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return _split_schema(url)
    if scheme:
        raise ValueError(f"store URL scheme {scheme!r} is not supported: {_EXPECTED}")
    raise ValueError(f"store URL has no recognised scheme: {_EXPECTED}")


def _sqlite_path(location: str, base_dir: Path | None) -> Path:
    if not location:
        raise ValueError(f"store URL 'sqlite:' has no PATH: {_EXPECTED}")
    if location == ":memory:":
        raise ValueError("an in-memory SQLite store would lose every message: give a file PATH")
    if location.startswith("//"):
        # sqlite://x.db reads as a URL with host 'x.db' to some and as '//x.db' to others.
        raise ValueError(
            f"write 'sqlite:PATH' (sqlite:var/db.sqlite3, sqlite:/abs/db.sqlite3), not "
            f"'sqlite://...': {_EXPECTED}"
        )
    path = Path(location)
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return path


def _split_schema(url: str) -> tuple[str, str | None]:
    """Remove our ``schema`` query parameter, leaving the rest of the DSN byte for byte."""
    query = urlsplit(url).query
    pairs = parse_qsl(query, keep_blank_values=True)
    schemas = [value for key, value in pairs if key == "schema"]
    if not schemas:
        return url, None
    if len(schemas) > 1:
        raise ValueError("store URL gives the 'schema' query parameter more than once")
    if not schemas[0]:
        raise ValueError("store URL has an empty 'schema' query parameter")
    check_schema_name(schemas[0])
    # Rebuilt by hand: urlunsplit drops the '//' of 'postgresql:///db' (no host).
    base, _, rest = url.partition("?")
    _, hash_mark, fragment = rest.partition("#")
    others = urlencode([(key, value) for key, value in pairs if key != "schema"])
    return base + (f"?{others}" if others else "") + hash_mark + fragment, schemas[0]
