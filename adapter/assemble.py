"""The parts of a participant, built from its settings in one place: its keys, its store, its
directory of peers and its TLS contexts.

The configuration is data (`adapter.config`); turning it into objects that hold files,
connections or keys happens here, so that a module that reads settings never opens anything
by the way, and so that a test or an embedding application can build the same parts from
settings of its own. `Participant.from_config` and `adapter.run.participant_for` put them
together.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import timedelta

from . import tls
from .config import Config, ParticipantSettings, PeerSettings, SqliteStoreSettings, StoreSettings
from .directory import Peer, StaticDirectory
from .keys import PrivateKeys, load_private
from .store import DEFAULT_LEASE, open_store
from .store.base import Store

__all__ = ["TlsContexts", "directory_of", "load_keys", "new_store", "tls_contexts"]


def load_keys(settings: ParticipantSettings) -> PrivateKeys:
    """Our private keys. Never created here: a typo in `signing_key` must stop the
    participant, not give it a new identity that no peer knows (`keys generate` creates a
    key, once)."""
    return load_private(settings.signing_key)


def new_store(
    settings: ParticipantSettings | StoreSettings,
    *,
    exclusive: bool = True,
    lease_seconds: float | None = None,
) -> Store:
    """The configured store, not yet opened (``await store.open()`` before use); see
    `adapter.store.open_store` for `exclusive` (False: for reading beside a running
    participant) and the lease of its claims."""
    store = settings.store if isinstance(settings, ParticipantSettings) else settings
    lease = DEFAULT_LEASE if lease_seconds is None else timedelta(seconds=lease_seconds)
    if isinstance(store, SqliteStoreSettings):
        return open_store(f"sqlite:{store.path}", exclusive=exclusive, lease=lease)
    return open_store(store.dsn, exclusive=exclusive, lease=lease)


def directory_of(peers: tuple[PeerSettings, ...]) -> StaticDirectory:
    """The directory of the configured peers."""
    return StaticDirectory(
        Peer(p.domain, p.role, p.endpoint, p.signing_keys, p.barred) for p in peers
    )


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """What our endpoint serves with (None: plain HTTP) and what our client connects with."""

    server: ssl.SSLContext | None
    client: ssl.SSLContext


def tls_contexts(config: Config) -> TlsContexts:
    """Both TLS contexts of the [tls] table."""
    return TlsContexts(tls.server_context(config.tls), tls.client_context(config.tls))
