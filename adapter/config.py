"""The participant's TOML configuration, read into typed, frozen settings.

Data only: nothing here opens a store, loads a key or builds a TLS context for use
(`adapter.assemble` does, from these settings). Files the settings name are checked as they
are read, so that a mistake is reported with the field that names it.

Every mistake a user can make in the file becomes a `ConfigError` whose one-line message names
the file, the field (e.g. `peers[1].endpoint`) and what was expected, so that a typo never ends
in a traceback, and never silently falls back to a default: unknown keys are errors too.

Relative paths are resolved against the folder of the config file, not the working directory,
so that a participant starts the same way from wherever it is launched.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import math
import os
import re
import tomllib
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .directory.settings import (
    ADDRESS_BOOK_KEYS,
    DIRECTORY_KEYS,
    DNS_KEYS,
    AddressBookSettings,
    DirectorySettings,
    DnsSettings,
)
from .directory.settings import DEFAULT_ENDPOINT as DEFAULT_DNS_ENDPOINT
from .directory.settings import SOURCES as DIRECTORY_SOURCES
from .keys import MAX_PUBLISHED_KEYS
from .oauth2 import InboundOAuth2Settings, OAuth2Settings
from .settings import (
    DEFAULT_MAX_BODY_BYTES,
    ROUTINE_DEADLINE_SECONDS,
    SettingsError,
    check_fields,
    count,
)
from .settings import Delivery as Delivery  # the [delivery] table's settings
from .settings import Limits as Limits  # the [limits] table's settings
from .settings import ListenAddress as ListenAddress
from .tables import REQUIRED, Required, Table
from .tls import TlsFileError, TlsSettings, check
from .uftp.envelope import PublicKeys, parse_cs1
from .uftp.errors import AdapterError
from .uftp.messages import Role

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")
_S = TypeVar("_S", bound="DataclassInstance")

#: InternetDomainType of the UFTP schemas.
INTERNET_DOMAIN = re.compile(r"([a-z0-9]+(-[a-z0-9]+)*\.)+[a-z]{2,}")
#: UFTP Versions this adapter speaks.
SUPPORTED_VERSIONS = ("3.0.0", "3.1.0", "4.0.0")
#: Environment variables named UFTP_ADAPTER_<SECTION>_<KEY> override the file's settings.
ENV_PREFIX = "UFTP_ADAPTER_"


class ConfigError(AdapterError):
    """A user mistake in the configuration: one line naming file, field and expectation."""

    def __init__(self, source: str, field: str | None, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")


def is_internet_domain(text: str) -> bool:
    """Whether `text` is a valid UFTP InternetDomain (lowercase, at least two labels)."""
    return INTERNET_DOMAIN.fullmatch(text) is not None


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


class CroMode(StrEnum):
    """Whether the CRO accepts registrations from any DSO (open) or only known ones."""

    OPEN = "open"
    CLOSED = "closed"


class PeriodViolation(StrEnum):
    """What the CRO does with a registration outside the allowed period: refuse it, or keep
    the part that fits."""

    REJECT = "reject"
    CLIP = "clip"


@dataclass(frozen=True, slots=True)
class SqliteStoreSettings:
    """A SQLite database file (absolute path)."""

    path: Path


@dataclass(frozen=True, slots=True, repr=False)
class PostgresStoreSettings:
    """A PostgreSQL connection string, as asyncpg takes it."""

    dsn: str

    def __repr__(self) -> str:
        # The DSN may hold a password; a repr ends up in logs.
        return f"PostgresStoreSettings(dsn={_redact_url(self.dsn)!r})"


StoreSettings = SqliteStoreSettings | PostgresStoreSettings
#: The [delivery] and [limits] tables' settings by their former names (`adapter.settings`).
DeliverySettings = Delivery
LimitsSettings = Limits


@dataclass(frozen=True, slots=True)
class ParticipantSettings:
    """Who we are and how we run: the [participant] table."""

    domain: str
    role: Role
    signing_key: Path
    listen: ListenAddress
    store: StoreSettings
    #: Supported UFTP Versions; the first is the one we send.
    versions: tuple[str, ...]
    #: From then on, sign with the next key (`keys rotate`); see `adapter.rotation`.
    activate_next_key_at: datetime | None = None

    @property
    def send_version(self) -> str:
        """The Version we put in the messages we send."""
        return self.versions[0]


@dataclass(frozen=True, slots=True)
class CroSettings:
    """Common Reference Operator policy: the [cro] table (used when role = CRO)."""

    mode: CroMode = CroMode.OPEN
    time_zone: str = "Europe/Amsterdam"
    period_violation: PeriodViolation = PeriodViolation.REJECT

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                "time_zone",
                f"expected an IANA time zone such as 'Europe/Amsterdam', got {self.time_zone!r}",
            ) from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True, slots=True)
class FlexSettings:
    """Flexibility trading between DSO and AGR: the [flex] table (used when role = DSO or AGR).

    `isp_duration` and `time_zone` are the market's agreed values (metadata-attributes.md):
    a flex message with others is rejected ("ISP duration rejected", "TimeZone rejected").
    `portfolio` (a DSO's portfolio file, as `dso publish` reads it) or `congestion_points`
    name the points this participant trades on; a message for another is rejected ("Invalid
    CongestionPoint"). Neither given: points are not checked.
    """

    isp_duration: timedelta = timedelta(minutes=15)
    time_zone: str = "Europe/Amsterdam"
    portfolio: Path | None = None
    congestion_points: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus metrics, /health and /ready for the operator: the [metrics] table.

    On a listen address of their own, never the peers' port: what a participant measures
    (its peers, their volumes and failures) is the operator's to see, not the internet's.
    Without `listen` nothing is measured or served.
    """

    listen: ListenAddress | None = None


#: The longest path a Unix socket's address holds on Linux (sun_path, less its closing NUL).
MAX_SOCKET_PATH_BYTES = 107


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The admin socket of `serve`: the [admin] table.

    A Unix socket only this participant's user can open, through which the command line's
    `send`, `dso publish`, `dso query` and `cro show` use a running `serve` of the same
    configuration instead of opening its store and port themselves (`adapter.ops.admin`).
    By default it lies beside a SQLite store (``NAME.sock``, as its ``NAME.lock``); a
    PostgreSQL store has no folder of its own, so there it is set, or there is none.
    """

    #: None: no admin socket, and the command line always runs standalone.
    socket: Path | None = None


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long the store keeps what it no longer needs: the [retention] table.

    Envelopes (the signed messages as they travelled) carry connection identifiers, personal
    data in this domain, so they go first; the message rows (who sent what, when, and how its
    delivery went) stay longer, for the operator's questions and audit. A message still in
    flight is never pruned, whatever its age; the Common Reference register keeps its own
    history, which retention does not touch. The running participant prunes at its start and
    every hour; `uftp-adapter store prune` does it on demand.
    """

    envelopes_days: int = count(90)
    messages_days: int = count(400)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.envelopes_days > self.messages_days:
            raise SettingsError(
                "envelopes_days",
                f"must not exceed messages_days ({self.messages_days}): an envelope is kept "
                "with its message or not at all",
            )


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """A participant we exchange messages with: one [[peers]] entry."""

    domain: str
    role: Role
    endpoint: str
    #: One key, or two while the peer rotates its key (old and new both verify).
    public_keys: tuple[PublicKeys, ...]
    barred: bool = False
    #: Where `public_keys` were read from, if they came from a file.
    public_keys_file: Path | None = None
    #: The OAuth2 client credentials of this peer's authorization server (`adapter.oauth2`).
    oauth2: OAuth2Settings | None = None

    @property
    def signing_keys(self) -> tuple[bytes, ...]:
        """The public signing keys, as `open_sealed` takes them."""
        return tuple(key.signing for key in self.public_keys)


class BusFormat(StrEnum):
    """The data of message events on the bus: the signed inner XML, or its JSON form."""

    XML = "xml"
    JSON = "json"


#: URL schemes of the brokers the bus bridge speaks.
NATS_SCHEMES = ("nats", "tls")
BUS_SCHEMES = ("amqp", "amqps", *NATS_SCHEMES)


@dataclass(frozen=True, slots=True, repr=False)
class BusSettings:
    """The message-bus bridge: the [bus] table (see README, "Connecting your systems").

    The names are the documented defaults; outside checks and the operator's consumers rely
    on them, so change them only together."""

    #: amqp(s)://user:password@host:port/vhost (RabbitMQ) or nats://host:port (NATS JetStream).
    url: str
    format: BusFormat = BusFormat.XML
    #: Topic exchange (durable) the events are published to, persistent.
    exchange: str = "uftp.events"
    #: Exchange and quorum queue the commands come from.
    commands_exchange: str = "uftp.commands"
    commands_queue: str = "uftp.commands"
    #: Where rejected commands, and those redelivered `delivery_limit` times, end up.
    dead_letter_exchange: str = "uftp.dead"
    dead_letter_queue: str = "uftp.dead"
    #: NATS JetStream only: the streams of the events, the commands (a work queue) and the
    #: dead letters. The exchange names above are their subject prefixes there.
    stream: str = "UFTP"
    commands_stream: str = "UFTP_COMMANDS"
    dead_stream: str = "UFTP_DEAD"
    delivery_limit: int = 5
    #: Commands handled at once (the consumer's prefetch).
    prefetch: int = 16
    #: Whether to consume commands at all (False: events out only).
    commands: bool = True
    #: How long the operator's systems have to answer a request answered on the bus.
    answer_within_seconds: float = 3600.0

    def __repr__(self) -> str:
        # The URL may hold a password; a repr ends up in logs.
        return f"BusSettings(url={_redact_url(self.url)!r}, format={self.format.value!r})"


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    """Who answers inbound requests besides the role's built-in handlers: the [handlers]
    table."""

    #: Routers to load, as "package.module:attribute" (a `Router`, or a function of the
    #: participant that registers handlers on its router).
    modules: tuple[str, ...] = ()
    #: Request types (XML names, e.g. "DSOPortfolioQuery") the operator's systems answer
    #: through the bus: the request is published, the response comes back as a command.
    bus: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one participant."""

    participant: ParticipantSettings
    delivery: Delivery = field(default_factory=Delivery)
    cro: CroSettings = field(default_factory=CroSettings)
    peers: tuple[PeerSettings, ...] = ()
    #: The config file it came from (or the base folder, when parsed from a dict).
    path: Path = field(default_factory=Path)
    tls: TlsSettings = field(default_factory=TlsSettings)
    #: With the body cap, ``participant.max_body_bytes`` in the file.
    limits: Limits = field(default_factory=Limits)
    #: The message-bus bridge; None without a [bus] table.
    bus: BusSettings | None = None
    handlers: HandlerSettings = field(default_factory=HandlerSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    flex: FlexSettings = field(default_factory=FlexSettings)
    #: Where peers come from besides `peers`: the [directory] table.
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    #: Bearer tokens our endpoint requires besides the signature: the [oauth2_inbound] table.
    oauth2_inbound: InboundOAuth2Settings | None = None

    def peer(self, domain: str, role: Role | str | None = None) -> PeerSettings | None:
        """The peer at `domain` (in `role`), or None when it is not configured.

        Without a role, a domain that is configured in several roles is ambiguous and raises
        `LookupError`, rather than picking one whose keys might be the wrong ones.
        """
        domain = domain.strip().rstrip(".").lower()
        found = [
            peer
            for peer in self.peers
            if peer.domain == domain and (role is None or peer.role == role)
        ]
        if len(found) > 1:
            roles = ", ".join(peer.role for peer in found)
            raise LookupError(f"{domain} is configured in several roles ({roles}); name one")
        return found[0] if found else None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the TOML file at `path`, with the overrides of `environ` (default: the
    process's environment; see `environment_overrides`). Raises `ConfigError` for any
    problem in them."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, None, "no such config file") from None
    except IsADirectoryError:
        raise ConfigError(source, None, "is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read the config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(source, None, "the config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, None, f"invalid TOML: {exc}") from None
    absolute = path.absolute()
    data, origins = environment_overrides(data, os.environ if environ is None else environ)
    return parse_config(data, absolute.parent, source, path=absolute, origins=origins)


def environment_overrides(
    data: Mapping[str, object], environ: Mapping[str, str]
) -> tuple[dict[str, object], dict[str, str]]:
    """`data` with the settings that `environ` overrides, and for each overridden field
    (``limits.rate_per_sender``) the variable it came from, for error messages.

    Twelve-factor deployments configure through the environment: every key of every table
    (not the [[peers]] list) can be set as UFTP_ADAPTER_<TABLE>_<KEY>, upper case, e.g.
    ``UFTP_ADAPTER_PARTICIPANT_LISTEN=0.0.0.0:8080`` or
    ``UFTP_ADAPTER_LIMITS_RATE_PER_SENDER=10``. A value is read as a TOML value where it is one
    (``10``, ``2.5``, ``inf``, ``true``, ``["3.1.0"]``, ``"quoted"``) and as a string
    otherwise, then checked exactly as the file's keys are. A variable with the prefix that
    names no setting is an error, as an unknown key in the file is: a typo must not be
    ignored.
    """
    merged: dict[str, object] = {
        key: dict(value) if isinstance(value, dict) else value for key, value in data.items()
    }
    origins: dict[str, str] = {}
    # Longest first: a table whose name starts with another's and an underscore wins.
    tables = sorted((name for name in _SECTIONS if name != "peers"), key=len, reverse=True)
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable.removeprefix(ENV_PREFIX).lower()
        table = next((t for t in tables if name.startswith(t + "_")), None)
        key = name.removeprefix(f"{table}_") if table else ""
        if table is None or key not in _SECTIONS[table] or key == "generate_key":
            known = [
                f"{ENV_PREFIX}{t.upper()}_{k.upper()}"
                for t in tables
                for k in _SECTIONS[t]
                if k != "generate_key"
            ]
            hint = difflib.get_close_matches(variable, known, n=1)
            suggestion = f"; did you mean {hint[0]}?" if hint else ""
            raise ConfigError(
                f"environment variable {variable}",
                None,
                "names no setting (expected UFTP_ADAPTER_<TABLE>_<KEY>, e.g. "
                f"UFTP_ADAPTER_PARTICIPANT_LISTEN){suggestion}",
            )
        section = merged.setdefault(table, {})
        if isinstance(section, dict):  # otherwise the file's [table] is wrong: said below
            section[key] = _environment_value(environ[variable])
            origins[f"{table}.{key}"] = variable
    return merged, origins


def _environment_value(text: str) -> object:
    """A TOML value if `text` is exactly one, else `text` itself."""
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["value"] if list(parsed) == ["value"] else text


def parse_config(
    data: Mapping[str, object],
    base_dir: Path,
    source: str,
    *,
    path: Path | None = None,
    origins: Mapping[str, str] | None = None,
) -> Config:
    """Check parsed TOML `data`; relative paths are resolved against `base_dir`.

    `source` names the file in error messages; `path` becomes `Config.path` (default:
    `base_dir`). `origins` names the environment variable a field came from, which its
    errors then name instead of the file (see `environment_overrides`).
    """
    ctx = _Context(source, Path(base_dir).absolute(), dict(origins or {}))
    root = _Table(ctx, data, "", _ROOT_KEYS)
    participant_table = root.table("participant")
    participant = _participant(participant_table)
    delivery = _delivery(root.table("delivery", required=False))
    cro_table = root.table("cro", required=False)
    cro = _read(cro_table, CroSettings)
    if cro_table.present and participant.role is not Role.CRO:
        log.warning("%s: [cro] is ignored: participant.role is %s", source, participant.role)
    peers = _peers(ctx, root.get("peers"))
    tls = _tls(root.table("tls", required=False))
    max_body_bytes = participant_table.integer("max_body_bytes", DEFAULT_MAX_BODY_BYTES, minimum=1)
    limits = _limits(root.table("limits", required=False), delivery, max_body_bytes)
    bus_table = root.table("bus", required=False)
    bus = _bus(bus_table) if bus_table.present else None
    handlers = _handlers(root.table("handlers", required=False), bus)
    metrics = _metrics(root.table("metrics", required=False), participant)
    retention = _retention(root.table("retention", required=False), limits)
    flex_table = root.table("flex", required=False)
    flex = _flex(flex_table)
    if flex_table.present and participant.role is Role.CRO:
        log.warning("%s: [flex] is ignored: participant.role is CRO", source)
    directory = _directory(root.table("directory", required=False))
    admin = _admin(root.table("admin", required=False), participant)
    inbound_table = root.table("oauth2_inbound", required=False)
    oauth2_inbound = _oauth2_inbound(inbound_table) if inbound_table.present else None
    return Config(
        participant,
        delivery,
        cro,
        peers,
        path if path is not None else ctx.base_dir,
        tls,
        limits,
        bus,
        handlers,
        metrics,
        retention,
        flex,
        directory,
        admin,
        oauth2_inbound,
    )


def _participant(table: _Table) -> ParticipantSettings:
    domain = _domain(table, "domain")
    role = _role(table, "role")
    signing_key = table.path("signing_key")
    listen = _listen(table, "listen")
    store = _store(table, "store")
    versions = _versions(table, "versions")
    if "generate_key" in table.data:  # the sample configs had it: say what replaces it
        raise table.error(
            "generate_key",
            "no longer read: a participant never creates its own key, so that a typo in "
            "signing_key cannot give it a new identity; create the key once with "
            f"`uftp-adapter keys generate {signing_key.stem} --dir {signing_key.parent}` "
            "and delete this line",
        )
    activate_at = table.get("activate_next_key_at")
    if activate_at is not None and not (
        isinstance(activate_at, datetime) and activate_at.tzinfo is not None
    ):
        raise table.error(
            "activate_next_key_at",
            "expected a date and time with its offset, e.g. 2026-12-08T06:00:00Z, "
            f"got {_describe(activate_at)}",
        )
    return ParticipantSettings(domain, role, signing_key, listen, store, versions, activate_at)


def _delivery(table: _Table) -> Delivery:
    """The [delivery] table, checked as a whole: a program may choose a retry schedule out
    of order (a test's short deadline), a configuration file is held to one that makes
    sense."""
    settings = _read(table, Delivery)
    if settings.backoff_initial_seconds > settings.backoff_max_seconds:
        raise table.error(
            "backoff_initial_seconds",
            f"must not exceed backoff_max_seconds ({settings.backoff_max_seconds:g})",
        )
    if settings.request_timeout_seconds > settings.deadline_seconds:
        raise table.error(
            "request_timeout_seconds",
            f"must not exceed deadline_seconds ({settings.deadline_seconds:g})",
        )
    if settings.deadline_seconds < ROUTINE_DEADLINE_SECONDS:
        log.warning(
            "%s: delivery.deadline_seconds = %g is shorter than the hour the spec asks "
            "for routine messages",
            table.ctx.source,
            settings.deadline_seconds,
        )
    return settings


def _flex(table: _Table) -> FlexSettings:
    from .uftp.durations import parse_duration

    d = FlexSettings()
    text = table.string("isp_duration", "PT15M")
    try:
        isp_duration = parse_duration(text)
    except ValueError:
        isp_duration = timedelta(0)
    if isp_duration <= timedelta(0) or timedelta(days=1) % isp_duration:
        raise table.error(
            "isp_duration",
            f"expected a duration that divides an hour or a day, e.g. 'PT15M', got {text!r}",
        )
    time_zone = table.string("time_zone", d.time_zone)
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.error(
            "time_zone", f"expected an IANA time zone such as 'Europe/Amsterdam', got {time_zone!r}"
        ) from None
    portfolio = table.path("portfolio") if table.get("portfolio") is not None else None
    points = (
        tuple(table.string_list("congestion_points"))
        if table.get("congestion_points") is not None
        else None
    )
    return FlexSettings(isp_duration, time_zone, portfolio, points)


def _tls(table: _Table) -> TlsSettings:
    paths = {key: table.path(key) for key in _SECTIONS["tls"] if table.get(key) is not None}
    settings = TlsSettings(**paths)
    for cert, key in (
        ("certificate", "private_key"),
        ("client_certificate", "client_private_key"),
    ):
        if (cert in paths) != (key in paths):
            missing, given = (key, cert) if cert in paths else (cert, key)
            raise table.error(missing, f"missing; {table.where}.{given} needs it")
    if settings.client_ca is not None and settings.certificate is None:
        raise table.error(
            "client_ca",
            "needs certificate and private_key: client certificates are asked for over HTTPS",
        )
    try:
        check(settings)
    except TlsFileError as exc:
        raise table.error(exc.key, exc.problem) from None
    return settings


def _limits(table: _Table, delivery: Delivery, max_body_bytes: int) -> Limits:
    """The [limits] table, whose defaults for two keys follow other tables: half the handler
    slots for one sender, and room for two bodies of the largest size."""
    defaults = Limits()
    in_flight = max(defaults.body_bytes_in_flight, 2 * max_body_bytes)
    if table.get("body_bytes_in_flight") is not None:
        in_flight = table.integer("body_bytes_in_flight", minimum=1)
        if in_flight < max_body_bytes:
            raise table.error(
                "body_bytes_in_flight",
                f"must be at least participant.max_body_bytes ({max_body_bytes}), "
                "or a body of the largest size accepted could never be received",
            )
    limits = _read(
        table,
        Limits,
        handlers_per_sender=max(1, delivery.handler_concurrency // 2),
        body_bytes_in_flight=in_flight,
        max_body_bytes=max_body_bytes,
    )
    if (limits.handlers_per_sender or 0) > delivery.handler_concurrency:
        raise table.error(
            "handlers_per_sender",
            f"must not exceed delivery.handler_concurrency ({delivery.handler_concurrency})",
        )
    return limits


_BUS_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
#: A JetStream stream name: no dots, wildcards, whitespace or path separators.
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
#: The keys of [bus] that name JetStream streams, meaningless for RabbitMQ.
_NATS_ONLY = ("stream", "commands_stream", "dead_stream")
_MODULE_REF = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
)


def _bus(table: _Table) -> BusSettings:
    d = BusSettings(url="")
    url = table.string("url")
    try:
        parsed = urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise table.error("url", f"expected a broker URL: {exc}") from None
    if parsed.scheme not in BUS_SCHEMES or not parsed.hostname:
        raise table.error(
            "url",
            "expected 'amqp://user:password@host:5672/' (RabbitMQ) or 'nats://host:4222' "
            f"(NATS JetStream), got {_redact_url(url)!r}",
        )
    names = {}
    for key in (
        "exchange",
        "commands_exchange",
        "commands_queue",
        "dead_letter_exchange",
        "dead_letter_queue",
    ):
        value = table.string(key, getattr(d, key))
        if not _BUS_NAME.fullmatch(value):
            raise table.error(
                key, f"expected a name of letters, digits and '_.:-' (1-255), got {value!r}"
            )
        if parsed.scheme in NATS_SCHEMES and key.endswith("exchange") and "" in value.split("."):
            # On NATS the exchange names are subject prefixes, whose tokens are never empty.
            raise table.error(key, f"expected a NATS subject without empty tokens, got {value!r}")
        names[key] = value
    for key in _NATS_ONLY:
        if parsed.scheme not in NATS_SCHEMES and table.get(key) is not None:
            raise table.error(key, "names a NATS JetStream stream; this url is RabbitMQ")
        value = table.string(key, getattr(d, key))
        if not _STREAM_NAME.fullmatch(value):
            raise table.error(
                key, f"expected a stream name of letters, digits and '_-' (1-255), got {value!r}"
            )
        names[key] = value
    return BusSettings(
        url=url,
        format=_choice(table, "format", BusFormat, d.format),
        delivery_limit=table.integer("delivery_limit", d.delivery_limit, minimum=1),
        prefetch=table.integer("prefetch", d.prefetch, minimum=1),
        commands=table.boolean("commands", d.commands),
        answer_within_seconds=table.number("answer_within_seconds", d.answer_within_seconds),
        **names,
    )


def _handlers(table: _Table, bus: BusSettings | None) -> HandlerSettings:
    from .uftp.messages import MESSAGE_TYPES, PayloadResponse

    modules = table.string_list("modules") if table.get("modules") is not None else []
    for index, ref in enumerate(modules):
        if not _MODULE_REF.fullmatch(ref):
            raise table.error(
                f"modules[{index}]", f"expected 'package.module:attribute', got {ref!r}"
            )
    answered = table.string_list("bus") if table.get("bus") is not None else []
    requests = sorted(
        name for name, kind in MESSAGE_TYPES.items() if not issubclass(kind, PayloadResponse)
    )
    for index, name in enumerate(answered):
        if name not in requests:
            raise table.error(
                f"bus[{index}]", f"expected a request type ({', '.join(requests)}), got {name!r}"
            )
    if answered and (bus is None or not bus.commands):
        raise table.error(
            "bus", "requests answered on the bus need a [bus] table that consumes commands"
        )
    return HandlerSettings(tuple(modules), tuple(dict.fromkeys(answered)))


def _metrics(table: _Table, participant: ParticipantSettings) -> MetricsSettings:
    if table.get("listen") is None:
        return MetricsSettings()
    listen = _listen(table, "listen")
    if listen == participant.listen and listen.port != 0:
        raise table.error(
            "listen",
            f"must differ from participant.listen ({listen}): metrics are never served on "
            "the peers' port",
        )
    return MetricsSettings(listen)


def _admin(table: _Table, participant: ParticipantSettings) -> AdminSettings:
    if table.get("socket") is not None:
        path = table.path("socket")
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            raise table.error(
                "socket",
                f"{path} is {len(os.fsencode(path))} bytes long; the path of a Unix socket "
                f"holds at most {MAX_SOCKET_PATH_BYTES}",
            )
        return AdminSettings(path)
    store = participant.store
    if not isinstance(store, SqliteStoreSettings):
        return AdminSettings()
    path = store.path.with_name(store.path.name + ".sock")
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        log.warning(
            "%s: no admin socket: beside the store it would be %s, longer than a Unix socket's "
            "path may be; set [admin] socket to a shorter path for the command line to reach "
            "a running serve",
            table.ctx.source,
            path,
        )
        return AdminSettings()
    return AdminSettings(path)


def _retention(table: _Table, limits: Limits) -> RetentionSettings:
    settings = _read(table, RetentionSettings)
    # A resent copy is recognised by its stored row ("Already Submitted"); a copy older than
    # the TimeStamp window is rejected for its age instead. Rows must outlive that window.
    past = limits.time_stamp_past_seconds
    window_days = math.ceil(past / 86400) if math.isfinite(past) else math.inf
    if settings.messages_days <= window_days:
        raise table.error(
            "messages_days",
            f"must be more than the {window_days} days of limits.time_stamp_past_seconds: a "
            "message resent within them must still be recognised as one already received",
        )
    return settings


def _peers(ctx: _Context, value: object) -> tuple[PeerSettings, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ctx.error("peers", f"expected an array of tables ([[peers]]), got {_describe(value)}")
    peers: list[PeerSettings] = []
    seen: dict[tuple[str, Role], int] = {}
    for index, entry in enumerate(value):
        where = f"peers[{index}]"
        table = _Table(
            ctx,
            entry,
            where,
            ("domain", "role", "endpoint", "public_keys", "public_keys_file", "barred", "oauth2"),
        )
        domain = _domain(table, "domain")
        role = _role(table, "role")
        if (domain, role) in seen:
            first = seen[domain, role]
            raise ctx.error(
                where, f"duplicate peer ({domain}, {role}): already configured as peers[{first}]"
            )
        seen[domain, role] = index
        endpoint = _endpoint(table, "endpoint")
        public_keys, keys_file = _public_keys(table, domain)
        barred = table.boolean("barred", False)
        oauth2 = _oauth2(table, "oauth2") if "oauth2" in table.data else None
        peers.append(PeerSettings(domain, role, endpoint, public_keys, barred, keys_file, oauth2))
    return tuple(peers)


def _directory(table: _Table) -> DirectorySettings:
    """Read the [directory] table (absent: the static peers alone)."""
    if not table.present:
        return DirectorySettings()
    sources = tuple(table.string_list("sources")) if "sources" in table.data else ("static",)
    if not sources:
        raise table.error("sources", f"expected at least one of {', '.join(DIRECTORY_SOURCES)}")
    for index, name in enumerate(sources):
        if name not in DIRECTORY_SOURCES:
            raise table.error(
                f"sources[{index}]", f"expected one of {', '.join(DIRECTORY_SOURCES)}, got {name!r}"
            )
        if name in sources[:index]:
            raise table.error(f"sources[{index}]", f"{name!r} is listed twice")
    dns = None
    dns_data = table.get("dns")
    if "dns" in sources:
        if dns_data is None:
            raise table.error("dns", "missing; sources lists 'dns': add a [directory.dns] table")
        dns = _directory_dns(_Table(table.ctx, dns_data, table.name("dns"), DNS_KEYS))
    elif dns_data is not None:
        raise table.error("dns", "present, but sources does not list 'dns'")
    book = None
    book_data = table.get("address_book")
    if "address_book" in sources:
        if book_data is None:
            raise table.error(
                "address_book",
                "missing; sources lists 'address_book': add a [directory.address_book] table",
            )
        book = _address_book(
            _Table(table.ctx, book_data, table.name("address_book"), ADDRESS_BOOK_KEYS)
        )
    elif book_data is not None:
        raise table.error("address_book", "present, but sources does not list 'address_book'")
    return DirectorySettings(sources, dns, book)


def _address_book(table: _Table) -> AddressBookSettings:
    endpoint = table.string("endpoint", "") or None
    if endpoint is not None:
        try:
            endpoint.format(domain="d.example", role="dso")
        except (KeyError, IndexError, ValueError):
            raise table.error(
                "endpoint", "expected a URL template with {domain} and/or {role} only"
            ) from None
        _http_url(table, "endpoint", endpoint.replace("{", "").replace("}", ""))
    return AddressBookSettings(
        url=_http_url(table, "url", table.string("url")),
        oauth2=_oauth2(table, "oauth2") if "oauth2" in table.data else None,
        endpoint=endpoint,
        # The other keys are plain numbers, read as their fields say.
        **_fields(
            table,
            AddressBookSettings,
            *(k for k in ADDRESS_BOOK_KEYS if k not in ("url", "oauth2", "endpoint")),
        ),
    )


#: The [oauth2_inbound] keys read as they are (defaults: `InboundOAuth2Settings`).
_INBOUND_LIMITS = (
    "leeway_seconds",
    "jwks_max_age_seconds",
    "refetch_interval_seconds",
    "timeout_seconds",
)
_OAUTH2_KEYS = (
    "token_url",
    "client_id",
    "client_secret",
    "client_secret_file",
    "scope",
    "client_auth",
    "refresh_margin_seconds",
    "default_lifetime_seconds",
    "timeout_seconds",
)


def _oauth2(parent: _Table, key: str) -> OAuth2Settings:
    """An oauth2 table: client credentials (the secret, or a file holding it)."""
    table = _Table(parent.ctx, parent.get(key), parent.name(key), _OAUTH2_KEYS)
    has_secret, has_file = "client_secret" in table.data, "client_secret_file" in table.data
    if has_secret == has_file:
        raise table.error(None, "expected one of client_secret and client_secret_file")
    return OAuth2Settings(
        token_url=_http_url(table, "token_url", table.string("token_url")),
        client_id=table.string("client_id"),
        client_secret=table.string("client_secret") if has_secret else None,
        client_secret_file=table.path("client_secret_file") if has_file else None,
        scope=table.string("scope", "") or None,
        **_fields(
            table,
            OAuth2Settings,
            "client_auth",
            "refresh_margin_seconds",
            "default_lifetime_seconds",
            "timeout_seconds",
        ),
    )


def _oauth2_inbound(table: _Table) -> InboundOAuth2Settings:
    settings = InboundOAuth2Settings(
        jwks_url=_http_url(table, "jwks_url", table.string("jwks_url")),
        audience=table.string("audience"),
        issuer=table.string("issuer"),
        **_fields(table, InboundOAuth2Settings, *_INBOUND_LIMITS),
    )
    if "algorithms" in table.data:
        algorithms = tuple(table.string_list("algorithms"))
        if not algorithms or any(
            a.lower() == "none" or a.upper().startswith("HS") for a in algorithms
        ):
            # A key from a JWKS URL is public: an HMAC "key" there would let anyone sign.
            raise table.error(
                "algorithms", "expected public-key signature algorithms, e.g. ['RS256', 'ES256']"
            )
        settings = dataclasses.replace(settings, algorithms=algorithms)
    return settings


def _http_url(table: _Table, key: str, text: str) -> str:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise table.error(key, f"not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise table.error(key, f"expected an http(s) URL, got {_redact_url(text)!r}")
    return text


def _directory_dns(table: _Table) -> DnsSettings:
    resolvers = []
    for index, text in enumerate(table.string_list("resolvers")):
        resolvers.append(_directory_resolver(table, f"resolvers[{index}]", text))
    if not resolvers:
        raise table.error(
            "resolvers", "expected at least one validating resolver, e.g. '127.0.0.1:53'"
        )
    endpoint = table.string("endpoint", DEFAULT_DNS_ENDPOINT)
    try:
        url = urlsplit(endpoint.replace("{host}", "host.example"))
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise table.error("endpoint", f"not a URL: {exc}") from None
    if "{host}" not in endpoint or url.scheme not in ("http", "https") or "{" in url.geturl():
        raise table.error(
            "endpoint",
            f"expected an http(s) URL with {{host}} for the host DNS names, e.g. "
            f"{DEFAULT_DNS_ENDPOINT!r}, got {endpoint!r}",
        )
    return DnsSettings(
        resolvers=tuple(resolvers),
        endpoint=endpoint,
        **_fields(
            table,
            DnsSettings,
            "require_dnssec",
            "timeout_seconds",
            "max_ttl_seconds",
            "negative_ttl_seconds",
            "refresh_interval_seconds",
            "max_cached",
            "max_lookups_in_flight",
        ),
    )


def _directory_resolver(table: _Table, where: str, text: str) -> tuple[str, int]:
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


# --------------------------------------------------------------------------------------------
# Field checks
# --------------------------------------------------------------------------------------------


def _domain(table: _Table, key: str) -> str:
    value = table.string(key)
    if not is_internet_domain(value):
        raise table.error(
            key,
            "expected a lowercase internet domain such as 'dso.example.com' "
            f"(pattern {INTERNET_DOMAIN.pattern}), got {value!r}",
        )
    return value


def _role(table: _Table, key: str) -> Role:
    return _choice(table, key, Role, REQUIRED)


def _choice(
    table: _Table, key: str, kind: type[_E], default: _E | Literal[Required.REQUIRED]
) -> _E:
    value = table.string(key, REQUIRED if default is REQUIRED else str(default))
    try:
        return kind(value)
    except ValueError:
        allowed = " | ".join(repr(str(member)) for member in kind)
        raise table.error(key, f"expected one of {allowed}, got {value!r}") from None


_IPV6_LISTEN = re.compile(r"\[([^\]]*)\]:(\d+)")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def _listen(table: _Table, key: str) -> ListenAddress:
    value = table.string(key)
    expected = "expected 'host:port', e.g. '127.0.0.1:8081' or '[::1]:8081'"
    bracketed = _IPV6_LISTEN.fullmatch(value)
    if bracketed:
        host, port_text = bracketed.groups()
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise table.error(key, f"{expected}; {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise table.error(key, f"{expected}, got {value!r}")
        if ":" in host:
            raise table.error(key, f"{expected}: write an IPv6 address in brackets, got {value!r}")
        if not _HOST.fullmatch(host):
            raise table.error(key, f"{expected}; {host!r} is not a host name or address")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise table.error(key, f"{expected}; the port must be 0-65535, got {port_text!r}")
    return ListenAddress(host, int(port_text))


def _store(table: _Table, key: str) -> StoreSettings:
    value = table.string(key)
    # The store package owns the URL rules; checking one opens nothing and imports no driver.
    from .store.url import check_store_url

    try:
        check_store_url(value)
    except ValueError as exc:
        raise table.error(key, str(exc)) from None
    if value.startswith("sqlite:"):
        return SqliteStoreSettings(table.ctx.resolve(value.removeprefix("sqlite:")))
    return PostgresStoreSettings(value)


def _versions(table: _Table, key: str) -> tuple[str, ...]:
    values = table.string_list(key)
    if not values:
        raise table.error(key, "expected at least one Version, the one we send first")
    allowed = ", ".join(SUPPORTED_VERSIONS)
    for index, version in enumerate(values):
        if version not in SUPPORTED_VERSIONS:
            raise table.error(f"{key}[{index}]", f"expected one of {allowed}, got {version!r}")
        if version in values[:index]:
            raise table.error(f"{key}[{index}]", f"{version!r} is listed twice")
    return tuple(values)


def _endpoint(table: _Table, key: str) -> str:
    value = table.string(key)
    expected = "expected an http(s) URL such as 'https://example.com/shapeshifter/api/v3/message'"
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise table.error(key, f"{expected}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.hostname or any(c.isspace() for c in value):
        raise table.error(key, f"{expected}, got {_redact_url(value)!r}")
    if url.username is not None or url.password is not None:
        raise table.error(key, "must not hold credentials (user:password@); they would be logged")
    if url.fragment:
        raise table.error(key, f"{expected}, without a #fragment")
    if url.scheme == "http" and not _is_loopback(url):
        log.warning(
            "%s: %s.%s is plain http to a remote host; the spec requires TLS (https)",
            table.ctx.source,
            table.where,
            key,
        )
    return value


def _is_loopback(url: SplitResult) -> bool:
    host = url.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _public_keys(table: _Table, domain: str) -> tuple[tuple[PublicKeys, ...], Path | None]:
    inline = table.get("public_keys")
    has_file = table.get("public_keys_file") is not None
    if inline is not None and has_file:
        raise table.error(None, "give either public_keys or public_keys_file, not both")
    if inline is None and not has_file:
        raise table.error(
            None, "missing public_keys (one or two 'cs1.' strings) or public_keys_file"
        )
    if inline is not None:
        if isinstance(inline, str):  # one key needs no brackets
            strings, fields = [inline], ["public_keys"]
        else:
            strings = table.string_list("public_keys")
            fields = [f"public_keys[{index}]" for index in range(len(strings))]
        return _cs1_keys(table, "public_keys", strings, fields), None
    path = table.path("public_keys_file")
    key = "public_keys_file"
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        # The key is the peer's to give: one generated here would be a stranger's.
        raise table.error(
            key,
            f"{path} does not exist: ask the operator of {domain} for its public key "
            f"(a 'cs1.' string) and save it as {path}",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise table.error(key, f"cannot read {path}: {exc}") from None
    strings = [
        word
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for word in line.split()
    ]
    return _cs1_keys(table, key, strings, [f"{key} ({path})"] * len(strings)), path


def _cs1_keys(
    table: _Table, key: str, strings: list[str], fields: list[str]
) -> tuple[PublicKeys, ...]:
    if not 1 <= len(strings) <= MAX_PUBLISHED_KEYS:
        raise table.error(
            key, f"expected 1 or {MAX_PUBLISHED_KEYS} 'cs1.' key strings, got {len(strings)}"
        )
    keys: list[PublicKeys] = []
    for text, where in zip(strings, fields, strict=True):
        try:
            parsed = parse_cs1(text)
        except ValueError as exc:
            raise table.error(where, f"expected a 'cs1.' public key string: {exc}") from None
        if parsed in keys:
            raise table.error(where, "the same key is listed twice")
        keys.append(parsed)
    return tuple(keys)


def _redact_url(text: str) -> str:
    """`text` with any password in a URL replaced, for messages and reprs."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", text)


# --------------------------------------------------------------------------------------------
# Typed access to TOML tables
# --------------------------------------------------------------------------------------------


_TOML_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _describe(value: object) -> str:
    kind = next(
        (name for cls, name in _TOML_TYPES.items() if isinstance(value, cls)),
        f"a {type(value).__name__}",
    )
    if isinstance(value, (bool, int, float, str)):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return f"{kind} ({shown})"
    return kind


@dataclass(frozen=True, slots=True)
class _Context:
    source: str
    base_dir: Path
    #: field -> the environment variable that set it
    origins: dict[str, str] = field(default_factory=dict)

    def error(self, field: str | None, problem: str) -> ConfigError:
        origin = self.origins.get(field.split("[", 1)[0]) if field else None
        if origin is not None:
            return ConfigError(f"environment variable {origin}", field, problem)
        return ConfigError(self.source, field, problem)

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return (path if path.is_absolute() else self.base_dir / path).resolve()


class _Table(Table):
    """One TOML table, with typed getters whose errors name `where.key`."""

    def __init__(
        self, ctx: _Context, data: object, where: str, known: Collection[str], present: bool = True
    ) -> None:
        self.ctx = ctx
        self.present = present
        if not isinstance(data, dict):
            raise ctx.error(where or None, f"expected a table, got {_describe(data)}")
        self.data: dict[str, object] = data
        super().__init__(data, where, known)

    def error(self, key: str | None, problem: str) -> ConfigError:
        return self.ctx.error(self.name(key) or None, problem)

    def shown(self, value: object) -> str:
        return _describe(value)

    def get(self, key: str) -> object | None:
        return self.data.get(key)

    def table(self, key: str, *, required: bool = True) -> _Table:
        known = _SECTIONS[key]
        if key not in self.data:
            if required:
                raise self.error(key, f"missing; expected a [{key}] table")
            return _Table(self.ctx, {}, self.name(key), known, present=False)
        return _Table(self.ctx, self.data[key], self.name(key), known)

    def string(self, key: str, default: str | Literal[Required.REQUIRED] = REQUIRED) -> str:
        return self.value(key, str, "a string", default)

    def boolean(self, key: str, default: bool | Literal[Required.REQUIRED] = REQUIRED) -> bool:
        return self.value(key, bool, "true or false", default)

    def integer(
        self, key: str, default: int | Literal[Required.REQUIRED] = REQUIRED, *, minimum: int
    ) -> int:
        value = self.value(key, int, f"an integer >= {minimum}", default)
        if value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: float | Literal[Required.REQUIRED] = REQUIRED) -> float:
        """A positive, finite number of seconds; TOML integers are welcome."""
        expected = "a positive number"
        if key in self.data and isinstance(self.data[key], int):
            value = float(self.value(key, int, expected, default))
        else:
            value = self.value(key, float, expected, default)
        if not (math.isfinite(value) and value > 0):
            raise self.error(key, f"expected {expected}, got {value:g}")
        return value

    def string_list(self, key: str) -> list[str]:
        values: list[object] = self.value(key, list, "an array of strings", REQUIRED)
        for index, item in enumerate(values):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", f"expected a string, got {_describe(item)}")
        return [str(item) for item in values]

    def path(self, key: str) -> Path:
        value = self.string(key)
        if not value.strip():
            raise self.error(key, "expected a file path, got an empty string")
        return self.ctx.resolve(value)


def _read(table: _Table, kind: type[_S], **given: object) -> _S:
    """The settings object `kind` (a dataclass of `adapter.settings`' kinds of field) read
    from `table`: each field from the key of its name, of the type its annotation says, and
    where the key is absent the value in `given`, else the field's default. What the class
    checks of the values (`SettingsError`) is reported naming the key."""
    names = (item.name for item in dataclasses.fields(kind))
    try:
        return kind(**(given | _fields(table, kind, *names)))
    except SettingsError as exc:
        raise table.error(exc.field, exc.problem) from None


def _fields(table: _Table, kind: type[DataclassInstance], *names: str) -> dict[str, Any]:
    """The values of those fields of `kind` among `names` that `table` holds, each of the
    type its annotation says; a field the table does not hold is left to the class's
    default, which is thus written once."""
    hints = typing.get_type_hints(kind)
    fields = {item.name: item for item in dataclasses.fields(kind)}
    return {
        name: _typed(table, name, hints[name], fields[name].metadata)
        for name in names
        if name in table.data
    }


def _typed(table: _Table, key: str, kind: object, metadata: Mapping[str, Any]) -> object:
    """The value of `key`, checked to be of `kind`."""
    if kind is bool:
        return table.boolean(key)
    if kind in (int, int | None):  # None: a program's choice, never the file's
        return table.integer(key, minimum=metadata.get("minimum", 1))
    if kind is float:
        if metadata.get("unlimited") and table.get(key) == math.inf:
            return math.inf  # TOML `inf` switches a limit off
        return table.number(key)
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return _choice(table, key, kind, REQUIRED)
    if kind is str:
        return table.string(key)
    raise TypeError(f"no TOML reading for {key}: {kind!r}")


def _keys(kind: type[DataclassInstance]) -> tuple[str, ...]:
    """The keys of the table that `kind` is read from: its fields, but those of other
    tables."""
    return tuple(item.name for item in dataclasses.fields(kind) if not item.metadata.get("table"))


_ROOT_KEYS = (
    "participant",
    "delivery",
    "cro",
    "tls",
    "limits",
    "metrics",
    "retention",
    "admin",
    "bus",
    "handlers",
    "flex",
    "peers",
    "directory",
    "oauth2_inbound",
)

_SECTIONS: dict[str, tuple[str, ...]] = {
    "participant": (
        "domain",
        "role",
        "signing_key",
        "listen",
        "store",
        "versions",
        "max_body_bytes",
        "activate_next_key_at",
        "generate_key",  # no longer read: refused with what to do instead
    ),
    "delivery": _keys(Delivery),
    "cro": _keys(CroSettings),
    "flex": _keys(FlexSettings),
    "tls": _keys(TlsSettings),
    "bus": _keys(BusSettings),
    "handlers": _keys(HandlerSettings),
    "limits": _keys(Limits),
    "metrics": _keys(MetricsSettings),
    "retention": _keys(RetentionSettings),
    "directory": DIRECTORY_KEYS,
    "admin": _keys(AdminSettings),
    "oauth2_inbound": ("jwks_url", "audience", "issuer", "algorithms", *_INBOUND_LIMITS),
}
