"""Durable state behind the `Store` port: `open_store` picks an implementation by URL, and
`register_for` the Common Reference register of a store so opened.

This is the one module that knows every implementation. `PostgresStore` is not imported here
until a store needs it: it needs the optional asyncpg dependency (the ``postgres`` extra),
which an embedded SQLite deployment does not install. Import it from
`adapter.store.postgres`, or let `open_store` do so for a ``postgresql://`` URL. Checking a
URL (`check_store_url`, what the configuration does; `adapter.store.url`) never imports the
driver, so that a missing driver is reported where the store is needed, with the command that
installs it.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

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
from adapter.store.url import (
    POSTGRES_EXTRA,
    POSTGRES_SCHEMA_NAME,
    check_schema_name,
    check_store_url,
    parse_url,
    redact_dsn,
)

if TYPE_CHECKING:
    from adapter.store.admin import StoreAdmin
    from adapter.store.flex import FlexBook, FlexEvents
    from adapter.store.register import PortfolioRegister, RegisterEvents

__all__ = [
    "DEFAULT_LEASE",
    "POSTGRES_EXTRA",
    "POSTGRES_SCHEMA_NAME",
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
    "admin_for",
    "check_schema_name",
    "check_store_url",
    "flex_book_for",
    "open_store",
    "parse_url",
    "redact_dsn",
    "register_for",
]


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
    parsed = parse_url(url, base_dir)
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


def admin_for(store: Store) -> StoreAdmin:
    """The operator's view of an opened `SqliteStore` or `PostgresStore` (`adapter.store.admin`),
    chosen here for the reason `register_for` is."""
    if isinstance(store, SqliteStore):
        from adapter.store.admin_sqlite import SqliteAdmin

        return SqliteAdmin(store.read, store.run, functools.partial(store.run, offload=True))
    try:
        from adapter.store.postgres import PostgresStore
    except ModuleNotFoundError as exc:  # no asyncpg here: no PostgreSQL store either
        if exc.name != "asyncpg":
            raise
    else:
        if isinstance(store, PostgresStore):
            from adapter.store.admin_postgres import PostgresAdmin

            return PostgresAdmin(store)
    raise TypeError(f"no operator's view of {store!r}")


def register_for(store: Store, *, events: RegisterEvents | None = None) -> PortfolioRegister:
    """The Common Reference register on `store` (opened by its owner), of the store's own kind;
    with `events`, every applied update also puts its events in the store's bus outbox.

    Chosen here, beside `open_store`, because this module alone knows the implementations: a
    store that is not a `SqliteStore` can only be a `PostgresStore` if asyncpg is installed,
    so the PostgreSQL modules are imported only to tell. Raises TypeError for any other
    object.
    """
    if isinstance(store, SqliteStore):
        from adapter.store.register_sqlite import SqliteRegister

        return SqliteRegister(store, events=events)
    try:
        from adapter.store.postgres import PostgresStore
    except ModuleNotFoundError as exc:  # no asyncpg here: no PostgreSQL store either
        if exc.name != "asyncpg":
            raise
    else:
        if isinstance(store, PostgresStore):
            from adapter.store.register_postgres import PostgresRegister

            return PostgresRegister(store, events=events)
    raise TypeError(f"no Common Reference register for {store!r}")


def flex_book_for(store: Store, *, events: FlexEvents | None = None) -> FlexBook:
    """The flex conversations (`adapter.store.flex`) on `store` (opened by its owner), of the
    store's own kind; chosen here for the reason `register_for` is. With `events`, every
    change also puts its events in the store's bus outbox."""
    if isinstance(store, SqliteStore):
        from adapter.store.flex_sqlite import SqliteFlexBook

        return SqliteFlexBook(store, events=events)
    try:
        from adapter.store.postgres import PostgresStore
    except ModuleNotFoundError as exc:  # no asyncpg here: no PostgreSQL store either
        if exc.name != "asyncpg":
            raise
    else:
        if isinstance(store, PostgresStore):
            from adapter.store.flex_postgres import PostgresFlexBook

            return PostgresFlexBook(store, events=events)
    raise TypeError(f"no flex conversations for {store!r}")
