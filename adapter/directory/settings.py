"""The [directory] table: where peers come from, in order, and how DNS is asked.

Data only (like `adapter.config`, which reads this table through `parse_directory`): nothing
here imports dnspython, so a configuration without DNS needs none.

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

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..config import _Table

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


def parse_directory(table: _Table) -> DirectorySettings:
    """Read the [directory] table (absent: the static peers alone)."""
    from ..config import _Table

    if not table.present:
        return DirectorySettings()
    sources = tuple(table.string_list("sources")) if "sources" in table.data else ("static",)
    if not sources:
        raise table.error("sources", f"expected at least one of {', '.join(SOURCES)}")
    for index, name in enumerate(sources):
        if name not in SOURCES:
            raise table.error(
                f"sources[{index}]", f"expected one of {', '.join(SOURCES)}, got {name!r}"
            )
        if name in sources[:index]:
            raise table.error(f"sources[{index}]", f"{name!r} is listed twice")
    dns = None
    dns_data = table.get("dns")
    if "dns" in sources:
        if dns_data is None:
            raise table.error("dns", "missing; sources lists 'dns': add a [directory.dns] table")
        dns = _dns(_Table(table.ctx, dns_data, table._name("dns"), DNS_KEYS))
    elif dns_data is not None:
        raise table.error("dns", "present, but sources does not list 'dns'")
    return DirectorySettings(sources, dns)


def _dns(table: _Table) -> DnsSettings:
    resolvers = []
    for index, text in enumerate(table.string_list("resolvers")):
        resolvers.append(_resolver(table, f"resolvers[{index}]", text))
    if not resolvers:
        raise table.error(
            "resolvers", "expected at least one validating resolver, e.g. '127.0.0.1:53'"
        )
    endpoint = table.string("endpoint", DEFAULT_ENDPOINT)
    try:
        url = urlsplit(endpoint.replace("{host}", "host.example"))
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise table.error("endpoint", f"not a URL: {exc}") from None
    if "{host}" not in endpoint or url.scheme not in ("http", "https") or "{" in url.geturl():
        raise table.error(
            "endpoint",
            f"expected an http(s) URL with {{host}} for the host DNS names, e.g. "
            f"{DEFAULT_ENDPOINT!r}, got {endpoint!r}",
        )
    return DnsSettings(
        resolvers=tuple(resolvers),
        require_dnssec=table.boolean("require_dnssec", True),
        timeout_seconds=table.number("timeout_seconds", 3.0),
        endpoint=endpoint,
        max_ttl_seconds=table.number("max_ttl_seconds", 3600.0),
        negative_ttl_seconds=table.number("negative_ttl_seconds", 300.0),
    )


def _resolver(table: _Table, where: str, text: str) -> tuple[str, int]:
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise table.error(
            where, f"expected the IP address of a resolver ('127.0.0.1:53'), got {text!r}"
        ) from None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise table.error(where, f"expected a port 1-65535, got {port!r}")
    return str(address), int(port)
