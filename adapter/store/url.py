"""Store URLs, read without opening anything or importing a driver.

``sqlite:PATH`` names a SQLite file; ``postgresql://...`` (or ``postgres://...``) a
PostgreSQL DSN as asyncpg takes it, plus an optional ``schema=NAME`` query parameter that is
ours. The configuration checks a URL with `check_store_url` on a machine that may not have
the driver; `adapter.store.open_store` opens what `parse_url` reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "POSTGRES_EXTRA",
    "POSTGRES_SCHEMA_NAME",
    "check_schema_name",
    "check_store_url",
    "parse_url",
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
    parse_url(url)


def parse_url(url: str, base_dir: Path | None = None) -> Path | tuple[str, str | None]:
    """A SQLite file (a relative PATH is relative to `base_dir`, else the current directory),
    or a PostgreSQL DSN without our parameter and the schema name it gave. Raises ValueError
    for anything else, in a message that never repeats a password."""
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
