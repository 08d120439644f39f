"""The bus port on NATS JetStream (nats-py, the ``nats`` extra).

What the port's guarantees rest on here:

* An event is published on ``<events subject>.<route>`` (default ``uftp.events.in.X``) into
  the stream ``UFTP`` and `publish` returns on the stream's PubAck, JetStream's confirm that
  the event is stored (awaited on one inbox subscription of ours, each publication on a
  reply subject of its own: `NatsBus._publish_acked`). The event id goes out as
  ``Nats-Msg-Id``: within the stream's duplicate window (two minutes by default) JetStream
  stores a re-publication of the same event once and says so in the PubAck, so the relay's
  at-least-once becomes exactly-once in the stream as long as a retry falls within the
  window. Consumers dedupe by the id beyond it.
* Commands are read from the work-queue stream ``UFTP_COMMANDS`` (subjects
  ``uftp.commands.>``) by one durable pull consumer with explicit acks, through one pull
  request for `batch` commands that lingers on the server and is renewed once spent or
  expired; the commands that have arrived are handled at once (as RabbitMQ's prefetch hands
  them over), so that their commits share transactions. A command is settled only after its
  handler returned: acked
  (the work queue then drops it), or terminated once a copy is stored in the dead-letter
  stream ``UFTP_DEAD``, or negatively acknowledged with a delay that grows with each
  delivery.
* The delivery limit is counted here, from the delivery count JetStream puts in every
  delivery's metadata, not left to the consumer's ``max_deliver``: a server that stops
  delivering at its limit only says so in an advisory, a plain NATS message that is lost
  whenever nobody is connected at that moment, and the command would sit in the work queue
  for good. So the server delivers without limit, and a delivery past ``max_deliver`` (its
  handlers crashed or hung every time: a poison command) is dead-lettered before a handler
  sees it again; a REQUEUE verdict on the last allowed delivery is dead-lettered at once.
  A command is terminated only after its dead letter was confirmed, so none is ever lost.

A dead letter keeps the command's data and headers and adds ``Uftp-Dead-Reason``
(``rejected``, ``delivery_limit``, or ``malformed`` for CloudEvents headers that do not
decode), ``Uftp-Dead-Subject`` (where the command was published) and
``Uftp-Dead-Deliveries``; it is published on ``<dead subject>.<what followed the commands
subject>``, e.g. ``uftp.commands.dso.example.com`` becomes ``uftp.dead.dso.example.com``,
with the command's ``Nats-Msg-Id`` (else ``<stream>.<sequence>``), so that a command
dead-lettered twice (we stopped between the dead letter and the ``term``) is stored once.

The commands inbox and the PubAck inbox are read raw (`RawClient`): the messages as
the protocol carried them, a header block read once by the bus, no `Msg`, no subscription
task, and on a plain TCP connection read off the socket where asyncio hands the data over,
without nats-py's read loop (adapter/bus/nats_intake.py); deliveries are settled by
writing ``+ACK``/``-NAK``/``+TERM`` on their ack subject as publications are written
(`_send_pub`). Where nats-py's internals are not what that expects (checked at connect),
its own dispatch, read loop and ``publish`` are used, to the same effect.

nats-py reconnects on its own and subscribes again; the consume loop only has to start a new
pull after the one that was in flight when the connection dropped expired. A server that
lost its storage (or an operator) may leave us without streams or consumer: a publish that
finds no stream, and a pull that finds no consumer, declare them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.aio.transport import TcpTransport
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from adapter.bus.events import CloudEvent, InvalidEvent, nats_header_lines, split_nats, to_nats
from adapter.bus.nats_intake import RawTaker, take_socket
from adapter.bus.port import (
    BusError,
    BusHealth,
    BusUnavailable,
    Command,
    CommandHandler,
    Unroutable,
    Verdict,
)

__all__ = [
    "DEAD_DELIVERIES",
    "DEAD_REASON",
    "DEAD_SUBJECT",
    "MSG_ID",
    "NatsBus",
    "open_connection",
]

log = logging.getLogger(__name__)

#: JetStream's de-duplication header.
MSG_ID: Final = "Nats-Msg-Id"
_MSG_ID_LOWER: Final = MSG_ID.lower()
#: Headers a dead letter carries besides the command's own.
DEAD_REASON: Final = "Uftp-Dead-Reason"
DEAD_SUBJECT: Final = "Uftp-Dead-Subject"
DEAD_DELIVERIES: Final = "Uftp-Dead-Deliveries"

#: A header value the protocol carries as it stands (printable ASCII, no space).
_PLAIN_VALUE: Final = re.compile(r"[!-~]+")
#: A route is one or more subject tokens: no empty token, no wildcard, no whitespace.
_ROUTE: Final = re.compile(r"[^\s.*>]+(?:\.[^\s.*>]+)*")
#: How long one pull request lingers on the server. A pull that was in flight when the
#: connection dropped is only given up after this (and `_PULL_GRACE`), so it bounds how long
#: consuming takes to resume after a reconnection; idle, it costs two small requests per
#: period (the pull, and a check that the consumer still exists).
_PULL_SECONDS: Final = 2.0
#: How long past its expiry a pull request's end (a 408 from the server) is waited for before
#: it is taken for lost.
_PULL_GRACE: Final = 1.0
#: Where pull requests go (the default JetStream API prefix, which `NatsBus` uses).
_NEXT: Final = "$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
#: The inline status of a pull request's end: 408 expired, 404/409 ended by the server.
_STATUS: Final = "Status"
#: The inline status of a request no subscriber (here: no stream) took.
_NO_RESPONDERS: Final = "503"
#: How a PubAck of an event stored begins (``{"stream":"UFTP","seq":7}``, perhaps with
#: ``"duplicate":true``), and the key of one that reports an error: what decides it without
#: parsing its JSON (a PubAck that begins otherwise, or names an error, is parsed).
_PUB_ACK: Final = b'{"stream":'
_ERROR: Final = b'"error"'
#: Messages on the commands inbox beyond the `batch` a pull request asks for that are kept
#: (status messages, strays) before more are dropped, and the bytes (data and header block)
#: beyond which no more than `batch` are: whoever may publish to the inbox is not let fill
#: the memory (each message may be up to the server's max_payload). nats-py's own dispatch
#: does not bound this either: its callback drains the subscription's queue at once.
_MAX_STRAY: Final = 1024
_MAX_STRAY_BYTES: Final = 64 * 1024 * 1024
#: How soon after a command written at once (`RawClient.write_now`) the next one waits for
#: nats-py's flusher, to be written with whatever else is buffered by then.
_WRITE_GAP: Final = 0.001
#: How long the probe at connect (`NatsBus._raw_arrives`) waits for its message before it
#: asks the server: on loopback or a LAN the message is back within a millisecond or two.
#: The decision does not rest on this wait (the round trips after it decide, whatever the
#: latency); it only spares them where the probe is back at once, and bounds what a dispatch
#: that does not reach the taker adds to a connect: this and two round trips.
_PROBE_WAIT: Final = 0.05
#: What nats-py's error for what the server refused on permissions says (nats-py 2.x).
_PERMISSIONS: Final = "permissions violation"
#: How a delivery is settled (JetStream's acknowledgement protocol).
_ACK: Final = b"+ACK"
_NAK: Final = b"-NAK"
_TERM: Final = b"+TERM"
#: The longest a requeued command waits before its next delivery.
_MAX_REQUEUE_DELAY: Final = 60.0
#: Pause between attempts while the consume loop cannot reach the server.
_RETRY_SECONDS: Final = 0.5
#: How long nats-py waits between reconnection attempts (it never stops trying).
_RECONNECT_WAIT: Final = 1


class RawClient(Client):
    """nats-py's client, with subscriptions whose messages are taken as the protocol parser
    hands them over.

    For the subscriptions on the hot paths (the commands a pull request delivers, the
    PubAcks) nats-py's dispatch costs more than what is done with the message: its header
    parser (per header a strip, two decodes and a per-character whitespace check of the
    name: a sixth of a command's intake), a `Msg` object, a queue and a turn of the event
    loop for the subscription's task (bench/README.md). `take_raw` gives a subscription's
    messages to a function instead, called in the read loop with what nats-py's parser hands
    to ``_process_msg``: a private method of nats-py 2.x. So a `RawClient` is made only where
    that method is what it overrides (`_dispatches_raw`); `take_raw` refuses a subscription
    it cannot key as the parser does, and `NatsBus.connect` checks that a message reaches
    its taker at all, else nats-py's own dispatch is used. Every other subscription is
    nats-py's as before; the subscription itself (its resubscription after a reconnection
    included) stays nats-py's too.

    On a plain TCP connection the read loop itself is not nats-py's either (``_read_loop``,
    where it is what nats-py 2.x starts: `_reads_raw`): `SocketIntake` reads the socket and
    hands a taker its messages as they arrive, nats-py's handlers the rest, in order."""

    def __init__(self) -> None:
        super().__init__()
        self._raw_takers: dict[int, RawTaker] = {}
        #: When `write_now` last wrote (loop time).
        self._written_at = -1.0

    def take_raw(self, subscription: Subscription, taker: RawTaker) -> bool:
        """Give `subscription`'s messages to `taker` from now on (subscribed without a
        callback: nothing else reads them), if it is known by the id the parser hands over
        (nats-py 2.x: ``Subscription._id``, the key of ``Client._subs``); False when not.
        `taker` must not raise."""
        sid = getattr(subscription, "_id", None)
        subs = getattr(self, "_subs", None)
        if sid is None or not isinstance(subs, dict) or subs.get(sid) is not subscription:
            return False
        self._raw_takers[sid] = taker
        return True

    def write_now(self, command: bytes) -> bool:
        """Write `command` (a whole protocol command) to the socket at once, if that keeps
        the order and framing of what nats-py writes: connected over TCP, nothing of its own
        waiting in its pending buffer. Then no flusher task is woken and no queue passed for
        one command, a turn of the event loop saved (at a low rate every ack and every event
        is a write of its own). Within `_WRITE_GAP` of the last such write a command waits in
        the pending buffer for nats-py's flusher instead, which writes all that waits at
        once: under load (the acks of a batch, the relay catching up) a system call per
        command would cost more than the turn. False when it was not written."""
        transport = self._transport
        if self._pending_data_size or not isinstance(transport, TcpTransport):
            return False
        now = asyncio.get_running_loop().time()
        if now - self._written_at < _WRITE_GAP or not self.is_connected:
            return False
        self._written_at = now
        transport.write(command)  # type: ignore[no-untyped-call]
        return True

    async def _read_loop(self) -> None:
        # nats-py starts this in a task of its own once a connection's handshake is done.
        intake = take_socket(self, self._raw_takers) if _reads_raw(Client) else None
        if intake is None:
            await super()._read_loop()
        else:
            await intake.run()

    async def _process_msg(self, *args: Any, **kwargs: Any) -> None:
        # Any other shape than nats-py 2.x's goes to nats-py as it came: a TypeError here
        # would end its read loop.
        take = self._raw_takers.get(args[0]) if len(args) == 5 and not kwargs else None
        if take is None:
            await super()._process_msg(*args, **kwargs)
            return
        _, subject, reply, data, headers = args
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        try:
            take(subject, reply, data, headers)
        except Exception:
            # A bug of ours: never out of the read loop, which would stop reading (nats-py
            # logs it and breaks; no reconnection until its pings go unanswered).
            log.exception("NATS: taking a message failed")


def _dispatches_raw(client: type[Client]) -> bool:
    """Whether `client` dispatches through the ``_process_msg`` `RawClient` overrides: a
    coroutine function with nats-py 2.x's parameters (a changed one, called by its parser
    in another shape or without being awaited, would leave every subscription deaf)."""
    return _is_coroutine_of(client, "_process_msg", "sid", "subject", "reply", "data", "headers")


def _reads_raw(client: type[Client]) -> bool:
    """Whether `client` reads its connection in the ``_read_loop`` `RawClient` overrides (a
    coroutine function without parameters: nats-py 2.x's), so that `SocketIntake` may read
    in its place."""
    return _is_coroutine_of(client, "_read_loop")


def _is_coroutine_of(client: type[Client], name: str, *parameters: str) -> bool:
    """Whether `client`'s method `name` is a coroutine function taking `parameters` after
    ``self``: the shape of a private part of nats-py 2.x that `RawClient` overrides."""
    method = getattr(client, name, None)
    try:
        found = list(inspect.signature(method).parameters) if callable(method) else []
    except (TypeError, ValueError):
        return False
    return inspect.iscoroutinefunction(method) and found == ["self", *parameters]


async def open_connection(
    servers: list[str],
    *,
    name: str,
    timeout: float,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
    disconnected_cb: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A connection to one of `servers` that reconnects for ever once it is open. Raises
    `BusUnavailable` when no server answers within `timeout`, or the first attempt on every
    server failed: nats-py alone would go on trying (60 times 2 s per server) before saying
    anything. Then `error_cb` hears of the errors, `disconnected_cb` of each loss (not of
    the close). A `RawClient` where this nats-py dispatches as it expects (its raw
    subscriptions only `NatsBus` uses), else nats-py's own client."""
    nc = RawClient() if _dispatches_raw(Client) else Client()
    initial = True
    failures: list[BaseException] = []
    all_failed = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        if initial:
            failures.append(exc)
            if len(failures) >= len(servers):
                all_failed.set()
        elif error_cb is not None:
            await error_cb(exc)

    async def on_disconnected() -> None:
        if not initial and not nc.is_closed and disconnected_cb is not None:  # closing: no news
            await disconnected_cb()

    async def on_reconnected() -> None:
        log.info("NATS: reconnected to %s", nc.connected_url)

    attempt = asyncio.ensure_future(
        nc.connect(
            servers,
            name=name,
            connect_timeout=max(1, round(timeout)),
            reconnect_time_wait=_RECONNECT_WAIT,
            max_reconnect_attempts=-1,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )
    )
    gave_up = asyncio.ensure_future(all_failed.wait())
    connected = False
    try:
        await asyncio.wait({attempt, gave_up}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        connected = attempt.done() and attempt.exception() is None
    finally:
        gave_up.cancel()
        if not connected:  # failed, timed out or cancelled: leave nothing trying
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            with contextlib.suppress(Exception):
                await nc.close()
    if not connected:
        cause = failures[-1] if failures else "no answer within the timeout"
        raise BusUnavailable(f"cannot connect to NATS at {', '.join(servers)}: {cause}")
    initial = False
    return nc


class NatsBus:
    """The `Bus` port on NATS JetStream.

    ``url`` is a ``nats://`` (or ``tls://``) URL, credentials in it as nats-py accepts them,
    or several separated by commas for a cluster. The names default to what README "NATS
    JetStream" documents: `stream` takes ``<events_subject>.>``, `commands_stream` (work
    queue) ``<commands_subject>.>``, read by the durable pull consumer `consumer`, and
    `dead_stream` ``<dead_subject>.>``. `connect` creates the streams and the consumer that
    are missing and adds our subjects to a stream that lacks them, leaving every other
    setting an operator chose (limits, replicas) as it is.

    `max_deliver` is the delivery limit (module docstring); `ack_wait` how long a command
    may stay in a handler before the server delivers it again; a requeued command waits
    `requeue_delay`, doubled with each delivery up to a minute; `batch` commands are pulled
    at once; `timeout` bounds connecting, each PubAck and each JetStream API call.
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "UFTP",
        events_subject: str = "uftp.events",
        commands_stream: str = "UFTP_COMMANDS",
        commands_subject: str = "uftp.commands",
        dead_stream: str = "UFTP_DEAD",
        dead_subject: str = "uftp.dead",
        consumer: str = "uftp-adapter",
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        requeue_delay: float = 1.0,
        batch: int = 16,
        timeout: float = 5.0,
        name: str = "uftp-adapter",
    ) -> None:
        for name, subject in (
            ("events_subject", events_subject),
            ("commands_subject", commands_subject),
            ("dead_subject", dead_subject),
        ):
            if not _ROUTE.fullmatch(subject):
                raise ValueError(f"{name} {subject!r} is not a NATS subject without wildcards")
        if max_deliver < 1 or batch < 1 or ack_wait <= 0 or timeout <= 0 or requeue_delay < 0:
            raise ValueError("max_deliver and batch must be >= 1, the durations positive")
        self.servers = [part.strip() for part in url.split(",") if part.strip()]
        self.stream = stream
        self.events_subject = events_subject
        self.commands_stream = commands_stream
        self.commands_subject = commands_subject
        self.dead_stream = dead_stream
        self.dead_subject = dead_subject
        self.consumer = consumer
        self.max_deliver = max_deliver
        self.ack_wait = ack_wait
        self.requeue_delay = requeue_delay
        self.batch = batch
        self.timeout = timeout
        #: The connection's name, as the server's monitoring shows it.
        self.name = name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        #: Our inbox for PubAcks (`_store`): ``<inbox>.<n>`` per publication, one
        #: subscription on ``<inbox>.*`` for all, and the publications awaiting theirs.
        self._acks: Subscription | None = None
        self._ack_prefix = ""
        self._ack_waiting: dict[str, asyncio.Future[tuple[str, bytes]]] = {}
        self._ack_count = 0
        #: When each publication's PubAck is overdue (loop time, token), in publication
        #: order, so in order of deadline: one timer (`_ack_timer`, at the first deadline of
        #: a publication still waiting) for all, not one made and cancelled per publication
        #: (`_expire_acks`).
        self._ack_deadlines: deque[tuple[float, str]] = deque()
        self._ack_timer: asyncio.TimerHandle | None = None
        #: nats-py offers what `_send_hpub` and `RawClient` need (private parts, checked at
        #: `connect`).
        self._hpub = False
        self._raw = False
        #: A permissions error the server reported on our PubAck inbox (its subscription, the
        #: probe's publication) since `connect` began: why the probe did not come back.
        self._refused = ""
        #: Our inbox for the commands a pull request delivers, and what arrived in it.
        self._inbox: Subscription | None = None
        self._arrived: deque[_Delivery] = deque()
        self._arrived_bytes = 0
        #: What the consume loop awaits while nothing has arrived (`_arrive` wakes it).
        self._waiter: asyncio.Future[None] | None = None
        #: What wakes it once the pull request in flight is given up (`_next_arrival`).
        self._give_up: asyncio.TimerHandle | None = None
        #: Commands the pull request on the server may still deliver, and when it expires
        #: (loop time).
        self._requested = 0
        self._request_expires = 0.0
        self._task: asyncio.Task[None] | None = None
        self._declaring = asyncio.Lock()
        self._settling = False
        self._stopping = False
        #: The last pull reached the server (messages, or none before it expired).
        self._pull_ok = False
        self._last_error = ""

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and declare the three streams and the consumer. Raises `BusUnavailable`
        when no server answers within `timeout` or the first attempt on every server failed
        (nats-py would otherwise try for ever); once connected, nats-py reconnects on its own.
        """
        if self._nc is not None and not self._nc.is_closed:
            return

        async def on_disconnected() -> None:
            log.warning("NATS: disconnected; reconnecting")
            self._pull_ok = False

        async def on_error(exc: Exception) -> None:
            said = str(exc).lower()  # (nats-py lowers the server's text, subjects included)
            if self._ack_prefix and self._ack_prefix.lower() in said and _PERMISSIONS in said:
                self._refused = str(exc)  # the probe's publication, or the inbox itself
            self._note(f"connection: {exc!r}")  # once per kind, not per attempt

        nc = await open_connection(
            self.servers,
            name=self.name,
            timeout=self.timeout,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
        )
        self._nc = nc
        self._js = nc.jetstream(timeout=self.timeout)
        self._hpub = _offers_hpub(nc)
        self._raw = isinstance(nc, RawClient)
        # Deliveries to a former connection's inbox are settled by the server's ack wait.
        self._inbox, self._arrived, self._arrived_bytes = None, deque(), 0
        self._forget_acks()
        self._refused = ""
        try:
            prefix = nc.new_inbox() + "."
            self._ack_prefix = prefix
            try:
                self._acks = await self._subscribe(nc, prefix + "*", self._ack_raw, self._on_ack)
                if self._raw and not await self._raw_arrives(nc):
                    # nats-py's parser does not hand messages over through what `RawClient`
                    # overrides (they would pile up unread in the subscription's queue), or
                    # the server refused the probe, which proves nothing either way.
                    if self._refused:
                        log.warning(
                            "NATS: the intake probe was refused (%s); using nats-py's dispatch",
                            self._refused,
                        )
                    else:
                        log.warning(
                            "NATS: this nats-py's dispatch is not the one expected; using it"
                        )
                    self._raw = False
                    await self._acks.unsubscribe()
                    self._acks = await self._subscribe(
                        nc, prefix + "*", self._ack_raw, self._on_ack
                    )
            except (nats.errors.Error, OSError) as exc:
                raise BusUnavailable(f"NATS: {exc}") from exc
            await self._redeclare()
        except BaseException:  # whatever failed, nothing left half set up
            self._forget_acks()
            self._nc = self._js = None
            with contextlib.suppress(Exception):
                await nc.close()
            raise

    async def _subscribe(
        self,
        nc: Client,
        subject: str,
        raw: RawTaker,
        cb: Callable[[Msg], Awaitable[None]],
    ) -> Subscription:
        """A subscription whose messages `raw` takes (`RawClient`), or, where this nats-py
        does not dispatch as `RawClient` expects, `cb` as a nats-py callback."""
        if self._raw and isinstance(nc, RawClient):
            subscription = await nc.subscribe(subject)
            # Nothing arrives before this: the subscription is new, and nothing was sent
            # that would be answered on it.
            if nc.take_raw(subscription, raw):
                return subscription
            log.warning("NATS: this nats-py's subscriptions are not the ones expected")
            self._raw = False
            await subscription.unsubscribe()
        return await nc.subscribe(subject, cb=cb)

    async def _raw_arrives(self, nc: Client) -> bool:
        """Whether a message published to the PubAck inbox reaches its raw taker. It mostly
        does within `_PROBE_WAIT`; if not, round trips to the server decide, each bounded by
        `timeout` (a server that does not answer raises), not a wait for the message as long
        as `timeout`: that held every connect over a dispatch that does not reach the taker
        for the whole of it. A flush alone proves nothing: nats-py writes its ping at once,
        ahead of what waits in its buffer. So two: by the time the first one's pong is read,
        the flusher (woken by the publish, before that ping was written) has written the
        probe; the second ping follows it on the wire, the server delivers the probe before
        it answers that ping, and nats-py's parser (or `SocketIntake`) hands messages over in
        the order they came. Token 0 is never a publication's."""
        probe: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
        self._ack_waiting["0"] = probe
        try:
            await nc.publish(self._ack_prefix + "0", b"")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(probe), min(_PROBE_WAIT, self.timeout))
                return True
            for _ in range(2):
                await nc.flush(max(1, round(self.timeout)))
                if probe.done():
                    return True
            return False
        finally:
            self._ack_waiting.pop("0", None)

    async def _redeclare(self) -> None:
        """`_declare`, one caller at a time (publishes and the consume loop may find the
        server without our streams at the same moment)."""
        async with self._declaring:
            await self._declare()

    async def _declare(self) -> None:
        """Create what is missing; add our subjects to a stream that lacks them."""
        js = self._require_js()
        wildcard = ".>"
        try:
            await self._declare_stream(
                js,
                StreamConfig(
                    name=self.stream,
                    subjects=[self.events_subject + wildcard],
                    retention=RetentionPolicy.LIMITS,
                    storage=StorageType.FILE,
                    duplicate_window=120.0,
                ),
            )
            await self._declare_stream(
                js,
                StreamConfig(
                    name=self.commands_stream,
                    subjects=[self.commands_subject + wildcard],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                    duplicate_window=120.0,
                ),
            )
            await self._declare_stream(
                js,
                StreamConfig(
                    name=self.dead_stream,
                    subjects=[self.dead_subject + wildcard],
                    retention=RetentionPolicy.LIMITS,
                    storage=StorageType.FILE,
                    duplicate_window=120.0,
                ),
            )
            await js.add_consumer(
                self.commands_stream,
                ConsumerConfig(
                    durable_name=self.consumer,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait,
                    # Unlimited on the server: the limit is counted here (module docstring).
                    max_deliver=-1,
                    filter_subject=self.commands_subject + wildcard,
                    max_ack_pending=max(1000, self.batch),
                ),
            )
        except nats.js.errors.ServiceUnavailableError as exc:
            raise BusUnavailable(f"JetStream is not available: {exc}") from exc
        except nats.js.errors.APIError as exc:
            # A deployment error (a subject claimed by another stream, a name not allowed),
            # not something a retry mends.
            raise BusError(f"cannot declare the JetStream streams and consumer: {exc}") from exc
        except (nats.errors.Error, OSError) as exc:
            raise BusUnavailable(f"NATS: {exc}") from exc

    @staticmethod
    async def _declare_stream(js: JetStreamContext, config: StreamConfig) -> None:
        assert config.name is not None and config.subjects is not None
        try:
            info = await js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            log.info("NATS: created stream %s for %s", config.name, config.subjects)
            return
        present = list(info.config.subjects or [])
        missing = [subject for subject in config.subjects if subject not in present]
        if missing:
            await js.update_stream(info.config.evolve(subjects=present + missing))
            log.info("NATS: stream %s now also takes %s", config.name, missing)

    async def close(self) -> None:
        """Finish the commands in hand, those the pull request delivered meanwhile included
        (pull no more), and disconnect."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            if not self._settling:
                task.cancel()
            try:
                await asyncio.wait_for(task, self.ack_wait)
            except (asyncio.CancelledError, TimeoutError):
                pass
            except Exception:  # the loop's own failure was logged where it happened
                log.debug("NATS: the consume loop ended with an error", exc_info=True)
        nc, self._nc, self._js, self._inbox = self._nc, None, None, None
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
        self._forget_acks()
        if nc is not None and not nc.is_closed:
            try:
                await nc.close()  # flushes the acks still buffered
            except asyncio.CancelledError:
                # Closed while nats-py reconnects: it cancels its reconnection task, which
                # may be awaiting the lost connection's transport closing - the very future
                # close() awaits next, so that it raises CancelledError though nobody
                # cancelled us (the client is closed by then). Ours only if we were asked.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:
                log.debug("NATS: closing the connection failed", exc_info=True)

    def health(self) -> BusHealth:
        connected = self._nc is not None and self._nc.is_connected
        consuming = connected and self._task is not None and not self._task.done() and self._pull_ok
        return BusHealth(connected, consuming, "" if consuming else self._last_error)

    def _require_js(self) -> JetStreamContext:
        if self._js is None or self._nc is None or self._nc.is_closed:
            raise BusUnavailable("not connected to NATS")
        return self._js

    # -- events out ---------------------------------------------------------------------------

    async def publish(self, event: CloudEvent, route: str) -> None:
        """Publish `event` on ``<events subject>.<route>`` in binary mode (headers ``ce-*``)
        with ``Nats-Msg-Id`` = the event id, and return on the stream's PubAck. A second
        publication of the same event within the duplicate window is acknowledged as a
        duplicate and not stored again, which is what the relay's retries want.

        When no stream takes the subject, the streams are declared again first (the server
        may have lost its storage). Raises `Unroutable` when that does not mend it (the
        server refuses the stream: another one claims part of its subjects, a limit) or the
        event is larger than the server's ``max_payload`` (raise it), and `BusUnavailable`
        when the server cannot be reached, JetStream does not answer or refuses for now."""
        if not _ROUTE.fullmatch(route):
            raise Unroutable(route, "not a NATS subject suffix")
        await self._store(route, f"{self.events_subject}.{route}", event.data, event)

    async def _store(
        self,
        route: str,
        subject: str,
        data: bytes,
        headers: _Headers,
    ) -> None:
        """Publish into one of our streams and return on its PubAck (see `publish`)."""
        try:
            try:
                await self._publish_acked(subject, data, headers)
            except nats.js.errors.NoStreamResponseError:
                # Our stream is gone (a server that lost its storage, an operator): declare
                # it again and publish again.
                try:
                    await self._redeclare()
                except BusUnavailable:
                    raise
                except BusError as exc:
                    raise Unroutable(route, str(exc)) from exc
                await self._publish_acked(subject, data, headers)
        except nats.js.errors.NoStreamResponseError as exc:
            # Declared a moment ago, yet no answer: a stream without a leader for now.
            raise BusUnavailable(f"no JetStream stream answered on {subject}") from exc
        except nats.errors.MaxPayloadError as exc:
            raise Unroutable(route, f"{len(data)} bytes of data: {exc}") from exc
        except (nats.errors.Error, OSError) as exc:  # JetStream API errors included
            raise BusUnavailable(f"NATS publish on {subject}: {exc!r}") from exc

    async def _publish_acked(self, subject: str, data: bytes, headers: _Headers) -> None:
        """Publish with a reply subject of ours and return once the stream's PubAck came back
        on it: what nats-py's ``JetStreamContext.publish`` does, without its per-publication
        inbox name (a NUID and random hex), its callback closure, ``asyncio.wait_for`` and the
        `PubAck` object built from the answer, of which only "no error" matters here. The
        acks come to one subscription (``<inbox>.*``) that nats-py subscribes again after a
        reconnection; each publication waits on its own token, a counter, so that however
        many are in flight each hears of its own stream sequence only, and returns only once
        its event is stored (or it raises: no stream, an API error, no answer within
        `timeout`, which the caller retries, and `Nats-Msg-Id` dedupes).

        An event's headers are written as the protocol's header block (`_event_block`,
        `_send_hpub`, made only then) while nats-py is connected, instead of a dict of them
        that nats-py encodes again."""
        self._require_js()
        nc = self._nc
        if nc is None or self._acks is None:
            raise BusUnavailable("not connected to NATS")
        self._ack_count += 1
        token = str(self._ack_count)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[str, bytes]] = loop.create_future()
        self._ack_waiting[token] = answer
        try:
            block = None
            if self._hpub and isinstance(headers, CloudEvent) and nc.is_connected:
                block = _event_block(headers)  # None for an id not to be written as it is
            if block is not None:
                await _send_hpub(nc, subject, self._ack_prefix + token, block, data)
            else:  # nats-py buffers while it reconnects, and checks how much
                if isinstance(headers, CloudEvent):
                    headers = _event_headers(headers)
                await nc.publish(subject, data, reply=self._ack_prefix + token, headers=headers)
            deadline = loop.time() + self.timeout
            self._ack_deadlines.append((deadline, token))
            if self._ack_timer is None:
                self._ack_timer = loop.call_at(deadline, self._expire_acks)
            status, ack = await answer
        finally:
            self._ack_waiting.pop(token, None)
        if status == _NO_RESPONDERS:
            raise nats.js.errors.NoStreamResponseError
        if ack.startswith(_PUB_ACK) and _ERROR not in ack:
            return  # stored (or a duplicate of what is): nothing more to read in it
        reply = json.loads(ack)
        if "error" in reply:
            raise nats.js.errors.APIError.from_error(reply["error"])  # (it raises the class itself)

    def _ack_raw(self, subject: bytes, reply: bytes, data: bytes, block: bytes | None) -> None:
        """A PubAck as `RawClient` hands it over: its data, and the status (503: no stream)."""
        token = subject[len(self._ack_prefix) :].decode("ascii", "replace")
        answer = self._ack_waiting.pop(token, None)
        if answer is not None and not answer.done():
            answer.set_result((_status(block) if block else "", data))

    async def _on_ack(self, message: Msg) -> None:
        """A PubAck as nats-py hands it over (without `RawClient`)."""
        answer = self._ack_waiting.pop(message.subject[len(self._ack_prefix) :], None)
        if answer is not None and not answer.done():
            answer.set_result(((message.headers or {}).get(_STATUS, ""), message.data))

    def _expire_acks(self) -> None:
        """The publications whose PubAck is overdue fail (TimeoutError); the timer is set
        again for the first one still waiting. Those answered meanwhile are dropped on the
        way: at a low rate all are, and the next publication sets the timer anew, so that
        it is set about once per `timeout`, not once per publication."""
        self._ack_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadlines, waiting = self._ack_deadlines, self._ack_waiting
        while deadlines:
            deadline, token = deadlines[0]
            answer = waiting.get(token)
            if answer is not None and deadline > now:
                self._ack_timer = loop.call_at(deadline, self._expire_acks)
                return
            deadlines.popleft()
            if answer is not None:  # overdue
                del waiting[token]
                if not answer.done():
                    answer.set_exception(nats.errors.TimeoutError())

    def _forget_acks(self) -> None:
        """A new or closed connection: the acks awaited on the old one will not come."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._ack_deadlines.clear()
        waiting, self._ack_waiting = self._ack_waiting, {}
        for answer in waiting.values():
            if not answer.done():
                answer.set_exception(nats.errors.ConnectionClosedError())
        self._acks, self._ack_prefix = None, ""

    # -- commands in --------------------------------------------------------------------------

    async def consume(self, handler: CommandHandler) -> None:
        """Start the consume loop: take the commands that have arrived (up to `batch`), hand
        them all to `handler` at once, settle each by its verdict as it comes; take more when
        they are settled, across reconnections, until `close`.

        One pull request for `batch` commands lingers on the server for `_PULL_SECONDS`, and
        is renewed once it delivered them all or expired: a command costs its delivery and
        its ack, not a pull request and the server's "no more messages" answer of its own
        as nats-py's ``fetch`` makes it (bench/README.md, bench_commands_intake.py)."""
        self._require_js()
        if self._task is not None and not self._task.done():
            raise RuntimeError("this bus is consuming already")
        self._stopping = False
        self._task = asyncio.create_task(self._consume(handler), name="nats-consume")

    async def _consume(self, handler: CommandHandler) -> None:
        # Closing, the commands that reached us meanwhile are handled too: they are ours
        # until acked, and would otherwise wait out the ack wait before anyone got them.
        while not self._stopping or (self._arrived and self._connected()):
            try:
                messages = await self._pull_batch()
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except Exception as exc:  # stay alive: health() says what is wrong
                self._pull_ok = False
                self._note(f"pull failed: {exc!r}")
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            if not messages:
                continue
            self._settling = True
            try:
                if len(messages) == 1:  # the usual at a low rate: no task and gather for it
                    try:
                        await self._settle(messages[0], handler)
                        outcomes: list[BaseException | None] = []
                    except Exception as exc:
                        outcomes = [exc]
                else:
                    outcomes = await asyncio.gather(
                        *(self._settle(message, handler) for message in messages),
                        return_exceptions=True,
                    )
            finally:
                self._settling = False
            for outcome in outcomes:
                if isinstance(outcome, Exception):  # a bug of ours: delivered again
                    log.error("NATS: settling a command failed", exc_info=outcome)

    async def _pull_batch(self) -> list[_Delivery]:
        nc = self._nc
        if nc is None or nc.is_closed:
            if self._stopping:
                return []
            await self.connect()  # closed under us (nats-py gave up): start over
            nc = self._nc
            assert nc is not None
        if not nc.is_connected:
            self._pull_ok = False
            self._note("not connected to NATS")
            await asyncio.sleep(_RETRY_SECONDS)
            return []
        js = self._require_js()
        messages, ended = await self._take(nc)
        if not messages:
            if ended not in (None, "408"):
                # Ended by the server, not expired: its consumer deleted (with its stream,
                # say), a limit. Let that finish before looking, as long as a pull that is
                # never answered takes: a stream declared again while the server is still
                # deleting the old one would be left without our consumer's deliveries.
                self._note(f"the server ended a pull: {ended}")
                await asyncio.sleep(_PULL_SECONDS)
            # An idle period, a pull lost with a connection, or a consumer that no longer
            # exists: the server does not answer a pull for a missing consumer, so ask.
            try:
                await js.consumer_info(self.commands_stream, self.consumer)
            except nats.js.errors.NotFoundError:
                # A server that lost its storage, an operator: declare again, then pull.
                self._pull_ok = False
                self._note("the command consumer is gone; declaring it again")
                await self._redeclare()
                return []
        if not self._pull_ok and self._last_error:
            log.info("NATS: consuming commands again")
        self._pull_ok = True
        self._last_error = ""
        return messages

    async def _take(self, nc: Client) -> tuple[list[_Delivery], str | None]:
        """The commands that arrived, once at least one did, asking the server for more when
        the last request is spent; none when the request ended first (its status then, None
        when it was given up for lost)."""
        loop = asyncio.get_running_loop()
        if self._inbox is None:
            self._inbox = await self._subscribe(nc, nc.new_inbox(), self._arrive_raw, self._arrive)
            self._requested = 0
        if not self._arrived and (self._requested <= 0 or loop.time() > self._request_expires):
            request = {"batch": self.batch, "expires": int(_PULL_SECONDS * 1e9)}
            await nc.publish(
                _NEXT.format(stream=self.commands_stream, consumer=self.consumer),
                json.dumps(request).encode(),
                reply=self._inbox.subject,
            )
            self._requested = self.batch
            self._request_expires = loop.time() + _PULL_SECONDS
        messages: list[_Delivery] = []
        while True:
            if self._arrived:
                message = self._arrived.popleft()
                self._arrived_bytes -= message.size
            elif messages:
                return messages, None
            elif not await self._next_arrival(self._request_expires + _PULL_GRACE):
                self._requested = 0  # lost with a connection, or never answered
                return [], None
            else:
                continue
            if message.reply:  # a command (JetStream deliveries carry their ack subject)
                self._requested -= 1
                messages.append(message)
                continue
            status = message.status
            if status == "100":  # a heartbeat
                continue
            self._requested = 0  # the request ended (408 expired, 404/409 ended by the server)
            if not messages:
                return [], status

    def _arrive_raw(self, subject: bytes, reply: bytes, data: bytes, block: bytes | None) -> None:
        """A delivery as `RawClient` hands it over: its header block read once, here."""
        # Decoded as nats-py's `Msg` would be, but never raising (the read loop calls this):
        # what is not UTF-8 in a publisher's subject reads as U+FFFD.
        topic, answer = subject.decode(errors="replace"), reply.decode(errors="replace")
        if block:
            delivery = _Delivery(
                topic, answer, data, _parse_headers(block), _status(block), len(data) + len(block)
            )
        else:
            delivery = _Delivery(topic, answer, data, {}, "", len(data))
        self._arrived_one(delivery)

    async def _arrive(self, message: Msg) -> None:
        """A delivery as nats-py hands it over (without `RawClient`)."""
        self._arrived_one(_Delivery.of(message))

    def _arrived_one(self, delivery: _Delivery) -> None:
        arrived = len(self._arrived)
        if arrived >= self.batch + _MAX_STRAY or (
            arrived >= self.batch and self._arrived_bytes + delivery.size > _MAX_STRAY_BYTES
        ):
            # Not what our pull requests brought (they ask for `batch` at a time): whoever
            # else may publish to our inbox is not let fill the memory. A delivery dropped
            # here is delivered again after the ack wait.
            self._note("more messages on the commands inbox than were asked for; dropped")
            return
        self._arrived.append(delivery)
        self._arrived_bytes += delivery.size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_arrival(self, until: float) -> bool:
        """Whether something arrived by `until` (loop time): a future `_arrive` completes and
        a timer, not ``asyncio.wait_for`` of a queue's ``get``, which costs a task and a
        second future per command and two turns of the event loop before it is handled. The
        timer is the pull request's (`until` is when it is given up), set once for all the
        waits on it, not made and cancelled per wait."""
        loop = asyncio.get_running_loop()
        if until <= loop.time():
            return bool(self._arrived)
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = self._give_up
        if timer is None or timer.when() != until:
            if timer is not None:
                timer.cancel()
            self._give_up = loop.call_at(until, self._given_up)
        try:
            await waiter
        finally:
            self._waiter = None
        return bool(self._arrived)

    def _given_up(self) -> None:
        self._give_up = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _note(self, problem: str) -> None:
        if problem != self._last_error:
            log.warning("NATS: %s", problem)
        self._last_error = problem

    async def _settle(self, message: _Delivery, handler: CommandHandler) -> None:
        """Run the handler on one delivery and settle it by the verdict; settle errors only
        mean the server delivers it again after ack_wait, which the command id absorbs."""
        try:
            stream, sequence, deliveries = _ack_metadata(message.reply)
        except ValueError:  # not a JetStream delivery: nothing to settle
            log.warning("NATS: a message on %s without JetStream metadata", message.subject)
            return
        try:
            if deliveries > self.max_deliver:
                await self._dead_letter(message, "delivery_limit", deliveries, stream, sequence)
                return
            try:
                command = self._command(message, deliveries)
            except InvalidEvent as exc:
                log.warning("NATS: a command with malformed CloudEvents headers: %s", exc)
                await self._dead_letter(message, "malformed", deliveries, stream, sequence)
                return
            try:
                verdict = await handler(command)
            except Exception:
                log.exception("NATS: the command handler failed; the command is requeued")
                verdict = Verdict.REQUEUE
            if verdict is Verdict.ACK:
                await self._reply(message, _ACK)
            elif verdict is Verdict.REJECT:
                await self._dead_letter(message, "rejected", deliveries, stream, sequence)
            elif deliveries >= self.max_deliver:
                await self._dead_letter(message, "delivery_limit", deliveries, stream, sequence)
            else:
                await self._nak(message, deliveries)
        except (nats.errors.Error, OSError) as exc:
            self._note(f"could not settle a command ({exc!r}); the server delivers it again")

    async def _reply(self, message: _Delivery, settlement: bytes) -> None:
        """Settle `message` (``+ACK``, ``-NAK``, ``+TERM`` on its ack subject). Connected, the
        ``PUB`` is written as `_send_hpub` writes (nats-py's ``publish`` checks the subject
        with a regular expression and builds the command in three steps: a sixth of an ack);
        while nats-py reconnects, its ``publish`` buffers it."""
        nc = self._nc
        if nc is None or nc.is_closed:
            raise nats.errors.ConnectionClosedError
        if self._hpub and nc.is_connected:
            await _send_pub(nc, message.reply, settlement)
        else:
            await nc.publish(message.reply, settlement)

    async def _nak(self, message: _Delivery, deliveries: int) -> None:
        delay = int(self._requeue_delay(deliveries) * 1e9)  # nanoseconds
        await self._reply(message, _NAK + b' {"delay": %d}' % delay if delay else _NAK)

    def _requeue_delay(self, deliveries: int) -> float:
        return min(self.requeue_delay * 2.0 ** min(deliveries - 1, 16), _MAX_REQUEUE_DELAY)

    @staticmethod
    def _command(message: _Delivery, deliveries: int) -> Command:
        attributes, others = split_nats(message.headers)  # one pass, no copy
        message_id = others.get(MSG_ID)
        if message_id is None:  # header names are case-insensitive in NATS
            lower = _MSG_ID_LOWER
            message_id = next((v for k, v in others.items() if k.lower() == lower), None)
        return Command(
            attributes=attributes,
            data=message.data,
            message_id=message_id or None,
            redelivered=deliveries > 1,
            headers=others,
        )

    async def _dead_letter(
        self, message: _Delivery, reason: str, deliveries: int, stream: str, sequence: int
    ) -> None:
        """Store a copy in the dead-letter stream, then terminate the delivery. When the
        copy cannot be stored the command is requeued instead: never lost."""
        suffix = message.subject.removeprefix(self.commands_subject + ".")
        subject = f"{self.dead_subject}.{suffix}"
        headers = _own_headers(message.headers)
        # The same delivery dead-lettered twice (we crashed before term) is stored once.
        headers.setdefault(MSG_ID, f"{stream}.{sequence}")
        headers[DEAD_REASON] = reason
        headers[DEAD_SUBJECT] = message.subject
        headers[DEAD_DELIVERIES] = str(deliveries)
        try:
            await self._store(suffix, subject, message.data, headers)
        except BusError as exc:
            self._note(f"cannot store a dead letter on {subject} ({exc}); requeued")
            await self._nak(message, deliveries)
            return
        log.warning(
            "NATS: command %s dead-lettered (%s) after %d deliveries", sequence, reason, deliveries
        )
        await self._reply(message, _TERM)


@dataclass(slots=True)
class _Delivery:
    """A message on the commands inbox: a command (a JetStream delivery, `reply` its ack
    subject) or the inline status that ends a pull request (`status`, no `reply`)."""

    subject: str
    reply: str
    data: bytes
    headers: dict[str, str]
    status: str = ""
    #: Its bytes as the protocol carried them (data and header block; `_MAX_STRAY_BYTES`).
    size: int = 0

    @classmethod
    def of(cls, message: Msg) -> _Delivery:
        """The delivery nats-py made a `Msg` of (without `RawClient`)."""
        headers = message.headers or {}
        size = len(message.data) + sum(len(k) + len(v) + 4 for k, v in headers.items())
        return cls(
            message.subject, message.reply, message.data, headers, headers.get(_STATUS, ""), size
        )


#: The start of a header block with an inline status (``NATS/1.0 408 Request Timeout``).
_STATUS_LINE: Final = b"NATS/1.0 "


def _status(block: bytes) -> str:
    """The inline status of a header block, "" when it has none."""
    if not block.startswith(_STATUS_LINE):
        return ""
    code = block[len(_STATUS_LINE) : len(_STATUS_LINE) + 3]
    return code.decode("ascii") if code.isdigit() else ""


#: The first line of a header block without an inline status.
_NO_STATUS: Final = b"NATS/1.0\r\n"
#: A plain header line of a block (`_parse_headers`), the line before it ended by CRLF: the
#: name printable ASCII without a colon, one space or none after the colon, the value
#: printable ASCII (spaces inside) without white space at either end, or empty; as the
#: adapter, nats-py and most publishers write them. Its name and its value.
_PLAIN_LINE: Final = re.compile(r"(?<=\r\n)([!-9;-~]+): ?((?:[!-~](?:[ -~]*[!-~])?)?)\r\n")


def _parse_headers(block: bytes) -> dict[str, str]:
    """The headers of a header block as nats-py's parser reads them (``Name: value`` lines
    after the ``NATS/1.0`` line, split at the first colon, both sides stripped; a name that is
    not ASCII or holds white space skipped; values decoded as UTF-8, bad bytes replaced; the
    last of two equal names kept). Nothing in it is trusted further: the attributes are
    checked where they are read.

    A block of plain lines only (a command's, nearly always: ``NATS/1.0``, `_PLAIN_LINE`s,
    an empty line) holds nothing to strip, skip or replace: its lines are taken by one
    ``findall`` of `_PLAIN_LINE`, in C, not one by one in Python; any other block line by
    line (`_parse_header_lines`). Whether it is plain is told by the count of what was
    found: the lines of the block are what lies between its CRLFs (no two overlap); a
    plain line starts after one, holds neither CR nor LF and ends with the next, so it is
    one whole line of the block, and each line is found at most once. So the header lines
    (the CRLFs but the first and the last) are as many as the plain lines found only when
    each one is plain; and when each is, ``findall`` finds each, one after the other. One
    ``findall`` so checked costs 61,300 instructions for a block of eleven headers and
    21,600 for the three of bench_bus.py's commands (callgrind), where a regular expression
    of the whole block matched first, then ``findall``, cost 91,700 and 34,500."""
    if block.isascii() and block.startswith(_NO_STATUS) and block.endswith(b"\r\n\r\n"):
        text = block.decode("ascii")
        found = _PLAIN_LINE.findall(text, len(_NO_STATUS))
        if len(found) == text.count("\r\n") - 2:
            return dict(found)
    return _parse_header_lines(block)


def _parse_header_lines(block: bytes) -> dict[str, str]:
    """`_parse_headers` for any block, in one pass without nats-py's per-character check of
    each name."""
    headers: dict[str, str] = {}
    lines = block.split(b"\r\n")
    for line in lines[1:]:  # lines[0]: NATS/1.0 and the inline status, if any
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:  # white space in it (str.isspace's, as nats-py's)
            continue
        headers[key] = value.strip().decode("utf-8", "replace")
    return headers


def _ack_metadata(reply: str) -> tuple[str, int, int]:
    """The stream, stream sequence and delivery count of a JetStream delivery, from its ack
    subject: ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>
    .<pending>``, or the form with ``<domain>.<account hash>`` after ``$JS.ACK`` (and a
    token at the end) that newer servers send. Raises ValueError for anything else."""
    tokens = reply.split(".")
    if tokens[:2] == ["$JS", "ACK"]:
        if len(tokens) == 9:
            return tokens[2], int(tokens[5]), int(tokens[4])
        if len(tokens) >= 11:
            return tokens[4], int(tokens[7]), int(tokens[6])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


#: What a publication into one of our streams carries as headers: an event's (its
#: CloudEvents headers and ``Nats-Msg-Id``, the event id), or headers as they are (a dead
#: letter's).
_Headers = CloudEvent | dict[str, str]


def _event_headers(event: CloudEvent) -> dict[str, str]:
    """The headers of `event` as nats-py's ``publish`` takes them."""
    headers = to_nats(event)
    headers[MSG_ID] = event.id
    return headers


def _event_block(event: CloudEvent) -> bytes | None:
    """The headers of `event` (`_event_headers`, in the same order) as the NATS protocol's
    header block (``NATS/1.0``, a ``Name: value`` line each, an empty line), or None when
    its id (ours, a UUID, but not taken on trust) is not a value the protocol carries as it
    stands: nats-py's ``publish`` then cleans it as it does. The CloudEvents lines hold
    nothing it would clean (`nats_header_lines`)."""
    if _PLAIN_VALUE.fullmatch(event.id) is None:
        return None
    return f"NATS/1.0\r\n{nats_header_lines(event)}{MSG_ID}: {event.id}\r\n\r\n".encode()


def _offers_hpub(nc: Client) -> bool:
    """Whether this nats-py has the private parts `_send_hpub` writes through (2.x has)."""
    return (
        callable(getattr(nc, "_send_command", None))
        and callable(getattr(nc, "_flush_pending", None))
        and hasattr(nc, "_flush_queue")
        and isinstance(getattr(nc, "_pending_data_size", None), int)
        and hasattr(nc, "_transport")
    )


async def _send_hpub(nc: Client, subject: str, reply: str, block: bytes, data: bytes) -> None:
    """What ``Client.publish`` does once connected, with a header block encoded already.

    nats-py's public ``publish`` takes headers only as a dict, and encodes it per message
    (per header a strip, a regular expression, a translation and an encoding: some 30 us of
    CPU for the 14 headers of an event, a sixth of a publication with its PubAck;
    bench/README.md). So the ``HPUB`` command is written here, at once or into the same
    pending buffer and flushed the same way (`_send`), with the checks ``publish`` makes on a
    connected client (the subject and reply are ours, checked when built). While nats-py
    reconnects the public ``publish`` is used: its buffering and limits stay its own."""
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    if len(data) > nc.max_payload:
        raise nats.errors.MaxPayloadError
    size = len(block)
    command = f"HPUB {subject} {reply} {size} {size + len(data)}\r\n".encode()
    await _send(nc, command + block + data + b"\r\n", len(data))


async def _send_pub(nc: Client, subject: str, data: bytes) -> None:
    """A ``PUB`` without reply or headers, as `_send_hpub` writes it: the settlement of a
    delivery (`subject` its ack subject, as the server sent it: no white space, the
    protocol parser split it off at white space; `data` ours)."""
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    await _send(nc, f"PUB {subject} {len(data)}\r\n".encode() + data + b"\r\n", len(data))


async def _send(nc: Client, command: bytes, size: int) -> None:
    """Written at once (`RawClient.write_now`), or into nats-py's pending buffer, flushed by
    its flusher task as ``publish`` does: one write for all that is buffered by the time it
    runs (the settlements of a batch, say)."""
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += size
    if isinstance(nc, RawClient) and nc.write_now(command):
        return
    await nc._send_command(command)
    flush_queue = nc._flush_queue
    if flush_queue is not None and flush_queue.empty():
        await nc._flush_pending()


def _own_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The command's headers without JetStream's publish directives (an expected stream or
    sequence would make the dead letter's publication fail), its Nats-Msg-Id kept."""
    return {
        key: value
        for key, value in headers.items()
        if not key.lower().startswith("nats-") or key.lower() == MSG_ID.lower()
    }
