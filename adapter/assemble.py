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
from .config import (
    Config,
    ConfigError,
    ParticipantSettings,
    PeerSettings,
    SqliteStoreSettings,
    StoreSettings,
)
from .directory import Directory, Peer, StaticDirectory
from .directory.chain import DirectoryChain
from .keys import PrivateKeys, load_private
from .rotation import KeyRing
from .store import DEFAULT_LEASE, open_store
from .store.base import Store

__all__ = [
    "TlsContexts",
    "directory_for",
    "directory_of",
    "key_ring",
    "load_keys",
    "new_store",
    "reload_peers",
    "tls_contexts",
]


def load_keys(settings: ParticipantSettings) -> PrivateKeys:
    """Our private keys. Never created here: a typo in `signing_key` must stop the
    participant, not give it a new identity that no peer knows (`keys generate` creates a
    key, once)."""
    return load_private(settings.signing_key)


def key_ring(settings: ParticipantSettings) -> KeyRing:
    """Our keys as a participant signs with them: the current one, and the next one of a
    rotation (`adapter.rotation`) once it is activated."""
    return KeyRing.load(settings.signing_key, settings.activate_next_key_at)


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
    return StaticDirectory(_peers(peers))


def _peers(peers: tuple[PeerSettings, ...]) -> list[Peer]:
    return [Peer(p.domain, p.role, p.endpoint, p.signing_keys, p.barred) for p in peers]


def directory_for(config: Config) -> DirectoryChain:
    """The sources of the [directory] table, asked in its order: the [[peers]] of the file
    ("static") and DNS ("dns", `adapter.directory.dns`, which imports dnspython)."""
    sources: list[Directory] = []
    for name in config.directory.sources:
        if name == "static":
            sources.append(directory_of(config.peers))
        elif name == "dns":
            try:
                from .directory.dns import DnsDirectory
            except ImportError as exc:
                raise ConfigError(
                    str(config.path),
                    "directory.sources",
                    f"lists 'dns', which needs dnspython: pip install 'uftp-adapter[dns]' ({exc})",
                ) from None
            assert config.directory.dns is not None  # the config requires the table
            sources.append(DnsDirectory(config.directory.dns))
    return DirectoryChain(sources)


def reload_peers(directory: Directory, config: Config) -> bool:
    """Give the static sources of `directory` the [[peers]] of `config` (the file read again
    on SIGHUP); False when `directory` has none to give them to."""
    statics = [
        source
        for source in (directory.sources if isinstance(directory, DirectoryChain) else (directory,))
        if isinstance(source, StaticDirectory)
    ]
    for source in statics:
        source.replace(_peers(config.peers))
    return bool(statics)


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """What our endpoint serves with (None: plain HTTP) and what our client connects with."""

    server: ssl.SSLContext | None
    client: ssl.SSLContext


def tls_contexts(config: Config) -> TlsContexts:
    """Both TLS contexts of the [tls] table."""
    return TlsContexts(tls.server_context(config.tls), tls.client_context(config.tls))
