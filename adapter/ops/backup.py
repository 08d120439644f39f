"""`uftp-adapter store backup`: a consistent copy of a SQLite store, while it is in use.

SQLite's online backup API copies the database page by page from a read transaction, so the
copy is the store as it stood at one instant, whatever `serve` commits meanwhile (WAL: the
reader does not block it). The source is opened read-only; the copy is written to a new file
(mode 0600: it holds the envelopes, personal data) and made self-contained (journal mode
DELETE: no -wal file to carry along). A PostgreSQL store has its own tools (pg_dump).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from adapter.uftp.errors import AdapterError

__all__ = ["BackupError", "backup_sqlite"]


class BackupError(AdapterError):
    """The backup cannot be made; the message says why, naming the file."""


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy the SQLite store `source` to the new file `target`; its size in bytes."""
    if not source.is_file():
        raise BackupError(f"{source}: no SQLite store there: has the participant run yet?")
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{target}: exists already; give a new file name") from None
    except OSError as exc:
        raise BackupError(f"{target}: cannot create it: {exc.strerror}") from None
    os.close(descriptor)
    try:
        with (
            contextlib.closing(
                sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
            ) as reader,
            contextlib.closing(sqlite3.connect(target)) as copy,
        ):
            reader.execute("PRAGMA busy_timeout = 5000")
            reader.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
            (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise BackupError(f"{target}: the copy does not check out: {verdict}")
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise BackupError(f"cannot back up {source}: {exc}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target.stat().st_size
