"""The settings a participant runs with, as frozen objects with one default each.

    participant = Participant(
        domain="cro.example.com", role=Role.CRO, keys=keys, store=store, directory=directory,
        listen=ListenAddress("0.0.0.0", 8443),
        delivery=Delivery(deadline_seconds=7200),
        limits=Limits(rate_per_sender=10, max_connections=64),
    )

Each object is the Python form of one table of the configuration file (`Delivery` is
[delivery], `Limits` is [limits] plus ``participant.max_body_bytes``): `adapter.config` reads
the TOML onto these classes field by field, so that a setting is named, typed, defaulted and
checked here, once, for the file and for a program alike. A value out of range is a
`SettingsError` naming the field, raised as the object is made; the configuration reader
turns it into a `ConfigError` naming the file and the key.

Data only: nothing here opens, binds or reads anything.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .uftp.errors import AdapterError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ROUTINE_DEADLINE_SECONDS",
    "Delivery",
    "Limits",
    "ListenAddress",
    "SettingsError",
]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: The spec's retry window for routine messages (message-transport-mechanism.md).
ROUTINE_DEADLINE_SECONDS = 3600.0


class SettingsError(AdapterError, ValueError):
    """A setting out of its range: `field` names it, `problem` says what was expected."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def seconds(default: float, *, unlimited: bool = False) -> Any:
    """A field of a positive, finite number of seconds (or `inf` too, if `unlimited`)."""
    return field(default=default, metadata={"unlimited": unlimited})


def count(
    default: int, *, minimum: int = 1, optional: bool = False, table: str | None = None
) -> Any:
    """A field of a whole number of at least `minimum` (or None too, if `optional`: no cap,
    which only a program can ask for). `table`: the configuration table whose key it is,
    where that is not the table of its class."""
    return field(
        default=default, metadata={"minimum": minimum, "optional": optional, "table": table}
    )


def check_fields(settings: DataclassInstance) -> None:
    """Check every field of `settings` against its kind (see `seconds` and `count`)."""
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if "minimum" in item.metadata:
            minimum = item.metadata["minimum"]
            if value is None and item.metadata["optional"]:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingsError(item.name, f"expected an integer >= {minimum}, got {value!r}")
            if value < minimum:
                raise SettingsError(item.name, f"expected an integer >= {minimum}, got {value}")
        elif "unlimited" in item.metadata:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingsError(item.name, f"expected a positive number, got {value!r}")
            allowed = value == math.inf and item.metadata["unlimited"]
            if not (allowed or (math.isfinite(value) and value > 0)):
                raise SettingsError(item.name, f"expected a positive number, got {value:g}")


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """The host and port the HTTP server binds to (port 0: a free one, chosen at start)."""

    host: str = "127.0.0.1"
    port: int = 0

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """How we deliver what we send, and handle what we receive: the [delivery] table."""

    #: How long to keep retrying one message before it fails for good: the spec's hour for
    #: routine messages at least.
    deadline_seconds: float = seconds(ROUTINE_DEADLINE_SECONDS)
    #: One HTTP attempt.
    request_timeout_seconds: float = seconds(30.0)
    #: The first retry's delay ceiling, doubling after every failure up to the maximum
    #: (exponential backoff with jitter; also the schedule of handling that met a fault of
    #: ours).
    backoff_initial_seconds: float = seconds(1.0)
    backoff_max_seconds: float = seconds(300.0)
    #: Redirects an attempt follows.
    max_redirects: int = count(3, minimum=0)
    #: Handlers of inbound messages that may run at once.
    handler_concurrency: int = count(16)
    #: How long a process's claim on a message lasts unless renewed: how soon the other
    #: processes of a shared store take over the work of one that died.
    lease_seconds: float = seconds(30.0)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class Limits:
    """What peers may take of our capacity: the [limits] table, and the body cap
    (``participant.max_body_bytes``).

    The defaults protect a participant from one runaway peer without slowing routine UFTP
    traffic, which is a few messages a minute per peer (portfolio updates, a flex request per
    PTU). A 429 is temporary in the spec, so a sender over its rate retries later with back off:
    a limit paces a peer's catch-up after an outage, it loses nothing.
    """

    #: Messages a second, on average, that one sender may deliver (HTTP 429 above it);
    #: `inf` switches the limit off.
    rate_per_sender: float = seconds(50.0, unlimited=True)
    #: Messages one sender may deliver at once above that rate: a backlog after an outage.
    burst: int = count(200)
    #: Handlers of one sender's messages that may run at once (of Delivery.handler_concurrency),
    #: so that one noisy peer leaves slots to the others: half of the default 16. (The
    #: configuration file's default is half of its delivery.handler_concurrency.) None: no
    #: cap.
    handlers_per_sender: int | None = count(8, optional=True)
    #: Deliveries to one peer server (scheme, host and port) that may be in flight at once, so
    #: that a peer that hangs cannot hold every outbox slot while messages to others wait.
    #: None: no cap (and, on a shared store, no lock taken per delivery).
    deliveries_per_peer: int | None = count(16, optional=True)
    #: How long a sender may take to deliver its body once the headers are in (HTTP 408).
    read_timeout_seconds: float = seconds(30.0)
    #: How long a connection may take to deliver a request's head (line and headers), from
    #: when it opens or the head's first byte; then it is closed. Senders write it at once.
    header_timeout_seconds: float = seconds(10.0)
    #: How long an idle connection is kept open between requests (HTTP keep-alive). Longer
    #: than a client's usual 15 s, so that the client is the one to close it.
    keepalive_timeout_seconds: float = seconds(30.0)
    #: Connections open at once. Over it, the oldest without a request in progress is closed;
    #: when all are busy, the new one is answered 503, which senders retry.
    max_connections: int = count(256)
    #: Bytes of request bodies being received and checked at once, from all senders together
    #: (HTTP 503 over it, which senders retry): two bodies of the default largest size. At
    #: least `max_body_bytes`. (The configuration file's default is twice its
    #: participant.max_body_bytes where that is more.)
    body_bytes_in_flight: int = count(2 * DEFAULT_MAX_BODY_BYTES)
    #: How far a message's TimeStamp may lie ahead of our clock: clock skew, not more. A
    #: TimeStamp years ahead would otherwise make every later update of its sender look
    #: older than it ("Subordinate sequence number"). `inf`: no bound (a test's frozen clock).
    time_stamp_future_seconds: float = seconds(900.0, unlimited=True)
    #: How old a message's TimeStamp may be: a sender retries for an hour by default (the
    #: spec's minimum), longer if configured so; a week leaves room for that and for an
    #: outage of ours. `inf`: no bound.
    time_stamp_past_seconds: float = seconds(7 * 24 * 3600.0, unlimited=True)
    #: The largest request body accepted (HTTP 413 above it): ``participant.max_body_bytes``
    #: in the configuration file.
    max_body_bytes: int = count(DEFAULT_MAX_BODY_BYTES, table="participant")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.body_bytes_in_flight < self.max_body_bytes:
            raise SettingsError(
                "body_bytes_in_flight",
                f"must be at least max_body_bytes ({self.max_body_bytes}), or a body of the "
                "largest size accepted could never be received",
            )

    @property
    def rate_limit(self) -> tuple[float, float] | None:
        """(rate, burst) for the endpoint's `RateLimiter`, None when unlimited."""
        if math.isinf(self.rate_per_sender):
            return None
        return (self.rate_per_sender, float(self.burst))

    @property
    def time_stamp_window(self) -> tuple[timedelta, timedelta]:
        """How old and how far ahead a TimeStamp may be (a century for no bound)."""
        return (_bound(self.time_stamp_past_seconds), _bound(self.time_stamp_future_seconds))


#: What an infinite TimeStamp bound comes to: far enough, and still a date either side.
_NO_BOUND = timedelta(days=100 * 365)


def _bound(seconds: float) -> timedelta:
    return _NO_BOUND if math.isinf(seconds) else timedelta(seconds=seconds)
