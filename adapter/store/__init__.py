"""Durable state behind the `Store` port, and `open_store` to pick an implementation by URL.

`PostgresStore` is not imported here: it needs the optional asyncpg dependency (the
``postgres`` extra), which an embedded SQLite deployment does not install. Import it from
`adapter.store.postgres`, or let `open_store` do so for a ``postgresql://`` URL.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from adapter.store.base import (
    DeliveryAttempt,
    InboundRecord,
    InboundStatus,
    OutboundRecord,
    OutboundStatus,
    SaveOutcome,
    StorageError,
    Store,
)
from adapter.store.sqlite import SqliteStore

__all__ = [
    "DeliveryAttempt",
    "InboundRecord",
    "InboundStatus",
    "OutboundRecord",
    "OutboundStatus",
    "SaveOutcome",
    "SqliteStore",
    "StorageError",
    "Store",
    "open_store",
]

_EXPECTED = "expected 'sqlite:PATH' or 'postgresql://...[?schema=NAME]'"


def open_store(url: str, *, base_dir: Path | None = None) -> Store:
    """The store a URL names, not yet opened: call ``await store.open()`` before use.

    ``sqlite:PATH`` is a SQLite file; a relative PATH is relative to `base_dir` (the current
    directory if None). ``postgresql://...`` or ``postgres://...`` is a PostgreSQL DSN as
    asyncpg takes it, plus an optional ``schema=NAME`` query parameter (default ``uftp``) that
    is ours and removed before the DSN reaches asyncpg. Anything else is a ValueError, whose
    message never repeats a password.
    """
    if url.startswith("sqlite:"):
        return SqliteStore(_sqlite_path(url.removeprefix("sqlite:"), base_dir))
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        dsn, schema = _split_schema(url)
        from adapter.store.postgres import PostgresStore  # here: asyncpg is optional

        return PostgresStore(dsn) if schema is None else PostgresStore(dsn, schema=schema)
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
    # Rebuilt by hand: urlunsplit drops the '//' of 'postgresql:///db' (no host).
    base, _, rest = url.partition("?")
    _, hash_mark, fragment = rest.partition("#")
    others = urlencode([(key, value) for key, value in pairs if key != "schema"])
    return base + (f"?{others}" if others else "") + hash_mark + fragment, schemas[0]
