"""Replacing our signing key without a moment in which a peer refuses our messages.

The spec lets a participant publish two keys while it rotates (message-transport-mechanism.md,
footnote 17: "list both the old and the new key for a short period of time (e.g. 24 hours)
after a key has been replaced"). The steps, with the files beside NAME.key:

1. `keys rotate NAME` writes the next key, NAME.next.key (and NAME.next.pub), and prints the
   TXT record with both keys. We still sign with NAME.key; the operator publishes the record
   and waits until the old record's TTL has passed everywhere.
2. `keys activate NAME` makes the next key the current one: NAME.key becomes
   NAME.previous.key, NAME.next.key becomes NAME.key (an atomic rename: a reader never finds
   no key). A running participant notices the new NAME.key by itself (`KeyRing` looks at the
   file at most once a second), or at SIGHUP. Both keys stay published; messages signed with
   the old one still in flight (retries) verify. Instead of step 2, the participant can be
   given a date (`activate_next_key_at` in [participant]) from which it signs with
   NAME.next.key.
3. Later, `keys show NAME` prints the record with the new key alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .keys import KeyFileError, PrivateKeys, generate, load_private, public_path, write_private
from .uftp.envelope import PublicKeys

log = logging.getLogger(__name__)

#: How often a signing participant looks whether NAME.key was replaced.
CHECK_SECONDS = 1.0


def next_path(path: Path) -> Path:
    """NAME.key -> NAME.next.key: the key that takes over at activation."""
    return path.with_name(f"{path.stem}.next.key")


def previous_path(path: Path) -> Path:
    """NAME.key -> NAME.previous.key: the key activation replaced."""
    return path.with_name(f"{path.stem}.previous.key")


def rotate(path: Path) -> tuple[PublicKeys, PublicKeys]:
    """Write the next key beside `path` (refused if one is waiting already: it may be
    published); returns the public keys to publish, current first."""
    current = load_private(path)
    upcoming = generate()
    write_private(next_path(path), upcoming)
    return current.public, upcoming.public


def activate(path: Path) -> tuple[PublicKeys, PublicKeys]:
    """Make NAME.next.key the current key; returns the public keys to keep publishing, the
    new one first, the replaced one after."""
    upcoming_path = next_path(path)
    upcoming = load_private(upcoming_path)
    current = load_private(path)
    old = previous_path(path)
    # The replaced key stays on disk as NAME.previous.key (a hard link first, so that NAME.key
    # exists throughout), then the next key takes NAME.key's place in one rename.
    with contextlib.suppress(FileNotFoundError):
        old.unlink()
    os.link(path, old)
    with contextlib.suppress(FileNotFoundError):
        os.replace(public_path(path), public_path(old))
    os.replace(upcoming_path, path)
    os.replace(public_path(upcoming_path), public_path(path))
    return upcoming.public, current.public


class KeyRing:
    """The key we sign with now: NAME.key, or NAME.next.key from `activate_at` on; NAME.key
    read again when it was replaced (`activate`) or at `reload`."""

    def __init__(
        self,
        current: PrivateKeys,
        *,
        path: Path | None = None,
        upcoming: PrivateKeys | None = None,
        activate_at: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.current = current
        self.upcoming = upcoming
        self.activate_at = activate_at
        self._path = path
        self._monotonic = monotonic
        self._checked = monotonic()
        self._seen = self._identity()

    @classmethod
    def load(cls, path: Path, activate_at: datetime | None = None) -> KeyRing:
        upcoming_path = next_path(path)
        upcoming = load_private(upcoming_path) if upcoming_path.exists() else None
        if activate_at is not None and upcoming is None:
            log.warning(
                "%s: activate_next_key_at is set but there is no next key; create it with "
                "`uftp-adapter keys rotate %s`",
                upcoming_path,
                path.stem,
            )
        return cls(load_private(path), path=path, upcoming=upcoming, activate_at=activate_at)

    def signing(self, now: datetime) -> bytes:
        """The secret key to sign a message with at `now`."""
        if self._path is not None and self._monotonic() - self._checked >= CHECK_SECONDS:
            self._checked = self._monotonic()
            if self._identity() != self._seen:
                self.reload()
        if self.upcoming is not None and self.activate_at is not None and now >= self.activate_at:
            return self.upcoming.signing
        return self.current.signing

    def reload(self) -> None:
        """Read the key files again; a file that does not read keeps the keys we have."""
        if self._path is None:
            return
        try:
            fresh = KeyRing.load(self._path, self.activate_at)
        except KeyFileError as exc:
            log.error("the signing key did not read again, still signing as before: %s", exc)
            return
        if fresh.current.public != self.current.public:
            log.info(
                "signing with the key now in %s: %s", self._path, fresh.current.public.to_cs1()
            )
        self.current, self.upcoming = fresh.current, fresh.upcoming
        self._seen = fresh._seen

    def _identity(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            info = self._path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns
