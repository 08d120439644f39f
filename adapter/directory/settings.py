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
"""

from __future__ import annotations

from dataclasses import dataclass

#: The sources a chain may hold, by the name `sources` lists them with.
SOURCES = ("static", "dns")
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
DIRECTORY_KEYS = ("sources", "dns")


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
class DirectorySettings:
    """Where peers come from: `sources` in order (see `adapter.directory.chain`)."""

    sources: tuple[str, ...] = ("static",)
    dns: DnsSettings | None = None
