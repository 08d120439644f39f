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
from typing import TYPE_CHECKING

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
from .oauth2 import Credentials, TokenSource
from .rotation import KeyRing
from .store import DEFAULT_LEASE, open_store
from .store.base import Store

if TYPE_CHECKING:
    from .oauth2_inbound import BearerCheck

__all__ = [
    "TlsContexts",
    "bearer_check",
    "credentials_for",
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


def directory_for(config: Config, *, ssl_context: ssl.SSLContext | None = None) -> DirectoryChain:
    """The sources of the [directory] table, asked in its order: the [[peers]] of the file
    ("static"), a hub's address book ("address_book", `adapter.directory.addressbook`, with
    the hub's OAuth2 token; `ssl_context` verifies the hub) and DNS ("dns",
    `adapter.directory.dns`, which imports dnspython)."""
    settings = config.directory
    dns: Directory | None = None
    if "dns" in settings.sources:
        try:
            from .directory.dns import DnsDirectory
        except ImportError as exc:
            raise ConfigError(
                str(config.path),
                "directory.sources",
                f"lists 'dns', which needs dnspython: pip install 'uftp-adapter[dns]' ({exc})",
            ) from None
        assert settings.dns is not None  # the config requires the table
        dns = DnsDirectory(settings.dns)
    sources: list[Directory] = []
    for name in settings.sources:
        if name == "static":
            sources.append(directory_of(config.peers))
        elif name == "address_book":
            from .directory.addressbook import AddressBookDirectory

            book = settings.address_book
            assert book is not None  # the config requires the table
            token = (
                TokenSource(book.oauth2, ssl_context=ssl_context)
                if book.oauth2 is not None
                else None
            )
            sources.append(
                AddressBookDirectory(book, token=token, endpoints=dns, ssl_context=ssl_context)
            )
        elif name == "dns":
            assert dns is not None
            sources.append(dns)
    return DirectoryChain(sources)


def credentials_for(
    config: Config, directory: Directory, *, ssl_context: ssl.SSLContext | None = None
) -> Credentials:
    """Which OAuth2 token goes with a POST to which endpoint: a [[peers]] entry's own
    `oauth2`, else the hub's for the peers its address book lists."""
    from .directory.addressbook import AddressBookDirectory

    books = [source for source in _sources(directory) if isinstance(source, AddressBookDirectory)]
    credentials = Credentials(
        [book.token_for for book in books if book.token is not None], ssl_context=ssl_context
    )
    reload_credentials(credentials, config)
    return credentials


def reload_credentials(credentials: Credentials, config: Config) -> None:
    """Give `credentials` the per-peer OAuth2 settings of `config` (read again on SIGHUP)."""
    credentials.set_peers(
        (peer.endpoint, peer.oauth2) for peer in config.peers if peer.oauth2 is not None
    )


def bearer_check(
    config: Config, *, ssl_context: ssl.SSLContext | None = None
) -> BearerCheck | None:
    """The inbound bearer-token check of [oauth2_inbound] (None: not configured)."""
    if config.oauth2_inbound is None:
        return None
    try:
        from .oauth2_inbound import BearerCheck
    except ImportError as exc:
        raise ConfigError(
            str(config.path),
            "oauth2_inbound",
            f"needs PyJWT: pip install 'uftp-adapter[oauth2]' ({exc})",
        ) from None
    return BearerCheck(config.oauth2_inbound, ssl_context=ssl_context)


def _sources(directory: Directory) -> tuple[Directory, ...]:
    return directory.sources if isinstance(directory, DirectoryChain) else (directory,)


def reload_peers(directory: Directory, config: Config) -> bool:
    """Give the static sources of `directory` the [[peers]] of `config` (the file read again
    on SIGHUP); False when `directory` has none to give them to."""
    statics = [source for source in _sources(directory) if isinstance(source, StaticDirectory)]
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
