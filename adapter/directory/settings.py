"""The [directory] table: where peers come from, in order, and how DNS is asked.

Data only (`adapter.config` reads the table into these): nothing here imports dnspython, so a
configuration without DNS needs none.

    [directory]
    sources = ["static", "dns"]      # asked in this order; default ["static"]

    [directory.dns]
    resolvers = ["127.0.0.1:53"]     # validating resolvers on a trusted path
    require_dnssec = true            # believe only answers with the AD bit
    timeout_seconds = 3
    endpoint = "https://{host}/shapeshifter/api/v3/message"
    max_ttl_seconds = 3600
    negative_ttl_seconds = 300

    [directory.address_book]         # sources lists "address_book"
    url = "https://hub.example/api/participants"
    refresh_seconds = 300            # unless the answer's Cache-Control max-age says otherwise
    endpoint = "https://{domain}/shapeshifter/api/v3/message"   # for entries without one

    [directory.address_book.oauth2]  # the hub's client credentials (adapter.oauth2)
    token_url = "https://hub.example/oauth2/token"
    client_id = "dso.example.com"
    client_secret_file = "secrets/hub-client-secret"
"""

from __future__ import annotations

from dataclasses import dataclass

from ..oauth2 import OAuth2Settings
from ..settings import count

#: The sources a chain may hold, by the name `sources` lists them with.
SOURCES = ("static", "address_book", "dns")
#: The endpoint path of Shapeshifter 3 (`inbound.message_path(3)`) on the host DNS names.
DEFAULT_ENDPOINT = "https://{host}/shapeshifter/api/v3/message"
DNS_KEYS = (
    "resolvers",
    "require_dnssec",
    "timeout_seconds",
    "endpoint",
    "max_ttl_seconds",
    "negative_ttl_seconds",
)
DIRECTORY_KEYS = ("sources", "dns", "address_book")
ADDRESS_BOOK_KEYS = (
    "url",
    "oauth2",
    "refresh_seconds",
    "min_refresh_seconds",
    "retry_seconds",
    "timeout_seconds",
    "max_bytes",
    "max_entries",
    "endpoint",
)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """The [directory.dns] table: which resolver to trust, and how long to believe it."""

    #: (address, port) of validating resolvers, asked in order (the next on a failure).
    resolvers: tuple[tuple[str, int], ...]
    #: Believe only answers the resolver authenticated (AD bit). Off only for a test network.
    require_dnssec: bool = True
    #: Per query and resolver.
    timeout_seconds: float = 3.0
    #: The endpoint URL; `{host}` is the target of the peer's _http CNAME.
    endpoint: str = DEFAULT_ENDPOINT
    max_ttl_seconds: float = 3600.0
    negative_ttl_seconds: float = 300.0
    #: A signature that fails with cached keys asks DNS again, at most this often per peer.
    refresh_interval_seconds: float = 1.0
    #: Peers remembered (sender domains are the peer's to choose: bounded).
    max_cached: int = 4096
    max_lookups_in_flight: int = 64


@dataclass(frozen=True, slots=True)
class AddressBookSettings:
    """The [directory.address_book] table: a hub's participant list (`.addressbook`)."""

    url: str
    #: The hub's client credentials: the token for the list, and for POSTs to its peers.
    oauth2: OAuth2Settings | None = None
    #: How long a list is used before it is fetched again, unless the answer's
    #: Cache-Control max-age says how long (never below `min_refresh_seconds`).
    refresh_seconds: float = 300.0
    min_refresh_seconds: float = 10.0
    #: After a failed fetch the list in hand is kept, and the hub asked again this much later.
    retry_seconds: float = 30.0
    timeout_seconds: float = 10.0
    max_bytes: int = count(4 * 1024 * 1024, minimum=1024)
    max_entries: int = 10_000
    #: The endpoint of an entry that names none: a template with {domain} and {role};
    #: None: asked of the DNS source when the chain has one, else the entry is skipped.
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """Where peers come from: `sources` in order (see `adapter.directory.chain`)."""

    sources: tuple[str, ...] = ("static",)
    dns: DnsSettings | None = None
    address_book: AddressBookSettings | None = None
