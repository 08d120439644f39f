"""Prometheus metrics of one participant (the optional ``metrics`` extra: prometheus-client).

Each participant has a `CollectorRegistry` of its own rather than the library's global one:
a process may run several participants (the demo, the tests), and each serves its own
numbers. The metrics, all prefixed ``uftp_``:

* ``http_responses_total{status}``: the endpoint's answers to POSTed messages.
* ``inbound_refused_total{reason, peer}``: POSTs refused before their message was stored
  (reason: the error, e.g. InvalidSignature; peer: a configured one, else "unknown").
* ``messages_received_total{type, peer, outcome}``: verified messages stored (outcome: new,
  already-submitted, duplicate-identifier, rejected).
* ``delivery_attempts_total{type, peer, outcome, status}`` and ``delivery_seconds{peer}``:
  every POST of ours and how long it took (status: the HTTP status, or "none").
* ``messages_sent_total{type, peer, outcome}``: deliveries ended for good (delivered, failed,
  expired).
* ``handler_seconds{type, outcome}``: handling a received message (ok, fault, error).
* ``store_commit_seconds``: one group-commit transaction of a SQLite store, BEGIN to COMMIT.
* ``outbox_pending``, ``inbox_unfinished``, ``outbox_oldest_pending_seconds``: what waits,
  as the store says (refreshed every `housekeeping.DEPTHS_SECONDS`).
* ``ready``: 1 while the participant takes messages; ``info{version, role, domain}``.
"""

from __future__ import annotations

from datetime import datetime

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is part of `test`
    if exc.name != "prometheus_client":
        raise
    raise ImportError(
        "metrics need prometheus-client: pip install 'uftp-adapter[metrics]'"
    ) from None

from adapter.ops.version import version
from adapter.store.admin import QueueDepths

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

#: Seconds: a POST or a handler on loopback takes a millisecond, a large portfolio a second,
#: a peer that hangs until the request timeout 30.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Seconds: a commit's fsync is a fraction of a millisecond on an SSD.
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)


class Metrics:
    """The `Observer` that counts, and the registry `/metrics` serves."""

    def __init__(self, *, role: str, domain: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._http = Counter(
            "uftp_http_responses",
            "Answers to POSTed messages, by HTTP status",
            ["status"],
            registry=r,
        )
        self._refused = Counter(
            "uftp_inbound_refused",
            "POSTs refused before their message was stored",
            ["reason", "peer"],
            registry=r,
        )
        self._received = Counter(
            "uftp_messages_received",
            "Verified messages stored",
            ["type", "peer", "outcome"],
            registry=r,
        )
        self._attempts = Counter(
            "uftp_delivery_attempts",
            "POSTs of our messages",
            ["type", "peer", "outcome", "status"],
            registry=r,
        )
        self._delivery_seconds = Histogram(
            "uftp_delivery_seconds",
            "Duration of one POST of ours, until the peer's answer",
            ["peer"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._sent = Counter(
            "uftp_messages_sent",
            "Deliveries ended for good",
            ["type", "peer", "outcome"],
            registry=r,
        )
        self._handler_seconds = Histogram(
            "uftp_handler_seconds",
            "Handling one received message, its response queued",
            ["type", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._commit_seconds = Histogram(
            "uftp_store_commit_seconds",
            "One store transaction, BEGIN to COMMIT (SQLite)",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self._pending = Gauge("uftp_outbox_pending", "Messages still to be delivered", registry=r)
        self._unfinished = Gauge(
            "uftp_inbox_unfinished", "Messages received and not yet handled", registry=r
        )
        self._oldest = Gauge(
            "uftp_outbox_oldest_pending_seconds",
            "Age of the oldest message still to be delivered (0: none)",
            registry=r,
        )
        self._ready = Gauge("uftp_ready", "1 while the participant takes messages", registry=r)
        Info("uftp", "This participant", registry=r).info(
            {"version": version(), "role": role, "domain": domain}
        )

    # -- the Observer ---------------------------------------------------------------------

    def http_response(self, status: int) -> None:
        self._http.labels(str(status)).inc()

    def refused(self, reason: str, peer: str) -> None:
        self._refused.labels(reason, peer).inc()

    def received(self, message_type: str, peer: str, outcome: str) -> None:
        self._received.labels(message_type, peer, outcome).inc()

    def attempted(
        self, message_type: str, peer: str, outcome: str, status: int | None, seconds: float
    ) -> None:
        self._attempts.labels(message_type, peer, outcome, str(status or "none")).inc()
        self._delivery_seconds.labels(peer).observe(seconds)

    def sent(self, message_type: str, peer: str, outcome: str) -> None:
        self._sent.labels(message_type, peer, outcome).inc()

    def handled(self, message_type: str, outcome: str, seconds: float) -> None:
        self._handler_seconds.labels(message_type, outcome).observe(seconds)

    def committed(self, seconds: float) -> None:
        self._commit_seconds.observe(seconds)

    # -- state ----------------------------------------------------------------------------

    def set_depths(self, depths: QueueDepths, now: datetime) -> None:
        self._pending.set(depths.outbound_pending)
        self._unfinished.set(depths.inbound_unfinished)
        oldest = depths.oldest_pending_outbound
        self._oldest.set(0 if oldest is None else max(0.0, (now - oldest).total_seconds()))

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def exposition(self) -> bytes:
        """The text `/metrics` answers."""
        return generate_latest(self.registry)
