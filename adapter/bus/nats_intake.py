"""What the NATS server sends, read off the socket without nats-py's read loop.

nats-py reads a connection in a task of its own: ``StreamReader.read``, then its protocol
parser (a coroutine, regular expressions per operation), then ``_process_msg``. For a
command or a PubAck that is some 1,800 interpreter opcodes, a wake-up of that task and a
turn of the event loop per read, most of what a command through NATS costs beyond one
through RabbitMQ (bench/README.md). `SocketIntake` takes the socket's data where asyncio
hands it over (``data_received``, as adapter/bus/amqp.py does for AMQP): `ProtocolReader`
cuts it into operations, and a message on a subscription the bus takes raw goes to its taker
there and then. Everything else - messages of nats-py's own subscriptions, PING, PONG, INFO,
-ERR - goes, in the order it came, to nats-py's own handlers, awaited by `SocketIntake.run`
in the task nats-py started for its read loop.

The connection stays nats-py's: it opens it (TLS, authentication, the CONNECT handshake),
writes to it, pings, reconnects. Only the reading is taken over, after the handshake, and
only on a plain TCP connection as nats-py 2.x makes it (`take_socket` checks the parts it
relies on, else nats-py reads as before). The stream protocol nats-py's writer waits on
still hears of flow control, of EOF and of the connection's loss (`SocketIntake` passes them
on): ``drain`` and ``wait_closed`` work as before.

The wire format is NATS's client protocol (docs.nats.io, "Client Protocol"): control lines
ending in CRLF; ``MSG <subject> <sid> [reply-to] <#bytes>`` and ``HMSG <subject> <sid>
[reply-to] <#header bytes> <#total bytes>`` each followed by their payload and CRLF.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from nats.aio.transport import TcpTransport
from nats.errors import ProtocolError, UnexpectedEOF

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["ProtocolReader", "RawTaker", "SocketIntake", "take_socket"]

log = logging.getLogger(__name__)

#: What a message is handed over as: sid, subject, reply subject (empty when none), payload
#: and header block (None when none): the arguments of nats-py's ``Client._process_msg``.
MessageTaker = Callable[[int, bytes, bytes, bytes, "bytes | None"], None]
#: What any other operation is handed over as: its name (``PING``, ``PONG``, ``+OK``,
#: ``-ERR``, ``INFO``) and its argument (the error's text, the decoded INFO, else None).
OperationTaker = Callable[[str, Any], None]

#: What a message on a subscription the bus takes raw is handed to (`SocketIntake`,
#: adapter.bus.nats.RawClient): subject, reply subject (empty when it has none), data and
#: header block (None when it has none), as the protocol carried them.
RawTaker = Callable[[bytes, bytes, bytes, "bytes | None"], None]

_CRLF: Final = b"\r\n"
#: The first bytes of MSG and HMSG: a control line beginning otherwise is no message.
_MESSAGE_OPS: Final = frozenset(b"MH")
#: The longest control line waited for. The server's own limit for what clients send is
#: 4 KiB by default; what it sends (an INFO naming many cluster members) may be longer.
MAX_CONTROL_LINE: Final = 64 * 1024
#: Operations of nats-py's own (and messages behind them) waiting for `SocketIntake.run`
#: beyond which the socket is no longer read until they are handled.
_MAX_QUEUED: Final = 1024


class ProtocolReader:
    """The NATS client protocol as the server speaks it, cut into operations: bytes in
    (`feed`), calls out, no I/O. A message goes to `take_message`, any other operation to
    `take_operation`, in the order they came; a message whose bytes have not all arrived
    waits for the next `feed`. What is not the protocol raises `ProtocolError` (and the
    reader is not to be fed again: the connection is given up).

    A message may be no larger than `max_message` (its header block and payload): the
    server's ``max_payload`` bounds what it delivers, and this bounds what is kept
    waiting for the rest of one."""

    __slots__ = ("_pending", "_take_message", "_take_operation", "_wanted", "max_message")

    def __init__(
        self,
        take_message: MessageTaker,
        take_operation: OperationTaker,
        *,
        max_message: int = 64 * 1024 * 1024,
    ) -> None:
        self._take_message = take_message
        self._take_operation = take_operation
        self.max_message = max_message
        #: What was fed and not yet taken (the start of an operation), and how many bytes
        #: it must hold before another attempt: not worth one until then (a large message
        #: arrives in many pieces; each attempt would copy what came before).
        self._pending = bytearray()
        self._wanted = 0

    def feed(self, data: bytes) -> None:
        """Take every whole operation in what was pending and `data`."""
        if self._pending:
            self._pending += data
            if len(self._pending) < self._wanted:
                return
            data = bytes(self._pending)
            self._pending.clear()
        end = len(data)
        at = 0
        find = data.find
        while at < end:
            eol = find(_CRLF, at)
            if eol < 0 or eol - at > MAX_CONTROL_LINE:
                if end - at > MAX_CONTROL_LINE:
                    raise ProtocolError("nats: control line too long")
                self._keep(data, at, end - at + 1)
                return
            if data[at] in _MESSAGE_OPS:
                args = data[at:eol].split()
                header_size, size = _sizes(args)
                start = eol + 2
                stop = start + size
                if stop + 2 > end:
                    if size > self.max_message:
                        raise ProtocolError(f"nats: a message of {size} bytes")
                    self._keep(data, at, stop + 2 - at)
                    return
                if data[stop : stop + 2] != _CRLF:
                    raise ProtocolError("nats: a message without its CRLF")
                # args: op, subject, sid, [reply], [header size], size
                reply = args[3] if len(args) == (6 if header_size >= 0 else 5) else b""
                if header_size > 0:
                    self._take_message(
                        int(args[2]),
                        args[1],
                        reply,
                        data[start + header_size : stop],
                        data[start : start + header_size],
                    )
                else:
                    self._take_message(int(args[2]), args[1], reply, data[start:stop], None)
                at = stop + 2
                continue
            line = data[at:eol]
            at = eol + 2
            self._operation(line)

    def _keep(self, data: bytes, at: int, wanted: int) -> None:
        self._pending += memoryview(data)[at:]
        self._wanted = wanted

    def _operation(self, line: bytes) -> None:
        """A control line other than a message's."""
        parts = line.split(None, 1)  # (white space may follow an operation's name)
        op = parts[0] if parts else b""
        rest = parts[1].strip() if len(parts) == 2 else b""
        if op in (b"PING", b"PONG", b"+OK") and not rest:
            self._take_operation(op.decode(), None)
        elif op == b"-ERR":
            # nats-py hands its handler the text, quotes and all, in lower case.
            self._take_operation("-ERR", rest.decode("utf-8", "replace").lower())
        elif op == b"INFO" and rest:
            try:
                info = json.loads(rest)
            except ValueError:
                raise ProtocolError("nats: an INFO that is not JSON") from None
            if not isinstance(info, dict):
                raise ProtocolError("nats: an INFO that is not a JSON object")
            self._take_operation("INFO", info)
        else:
            raise ProtocolError("nats: unknown protocol")


def _sizes(args: list[bytes]) -> tuple[int, int]:
    """The header block's size (-1 for a MSG) and the whole message's, of a MSG or HMSG
    control line split at white space; `ProtocolError` unless it is one."""
    op = args[0]
    count = len(args)
    if op == b"MSG" and count in (4, 5):
        header, total = b"-1", args[-1]
    elif op == b"HMSG" and count in (5, 6):
        header, total = args[-2], args[-1]
        if not header.isdigit():
            raise ProtocolError("nats: malformed HMSG")
    else:
        raise ProtocolError("nats: unknown protocol")
    if not total.isdigit() or not args[2].isdigit():  # args[2]: the sid
        raise ProtocolError("nats: malformed MSG")
    header_size, size = int(header), int(total)
    if header_size > size:
        raise ProtocolError("nats: a header block larger than its message")
    return header_size, size


class SocketIntake(asyncio.Protocol):
    """The protocol of a nats-py connection's socket in place of nats-py's stream reader
    (module docstring). Messages on a subscription in `takers` (by sid) go to their taker
    as they arrive, unless something of nats-py's is still waiting ahead of them; the rest
    waits in a queue for `run`. `stream` is the protocol that was the socket's: it goes on
    hearing of flow control and of the connection's end."""

    def __init__(
        self,
        client: Client,
        stream: asyncio.StreamReaderProtocol,
        takers: dict[int, RawTaker],
        socket: asyncio.Transport,
        *,
        max_message: int,
    ) -> None:
        self._client = client
        self._stream = stream
        self._takers = takers
        self._reader = ProtocolReader(self._message, self._operation, max_message=max_message)
        #: nats-py's work, in the order it came: (operation, argument) or, for a message,
        #: (None, its arguments).
        self._queue: deque[tuple[str | None, Any]] = deque()
        #: `run` is in one of nats-py's handlers: what comes meanwhile waits behind it.
        self._busy = False
        self._socket = socket
        self._reading_paused = False
        #: Why reading ended: a `ProtocolError`, the connection's loss (its exception, or
        #: `UnexpectedEOF`); None while it goes on.
        self._ended: Exception | None = None
        self._wakeup: asyncio.Future[None] | None = None

    # -- what asyncio calls -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._ended is not None:
            return
        try:
            self._reader.feed(data)
        except ProtocolError as exc:
            self._end(exc)

    def eof_received(self) -> bool | None:
        said = self._stream.eof_received()
        self._end(UnexpectedEOF())
        return said

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream.connection_lost(exc)
        self._end(exc if isinstance(exc, OSError) else UnexpectedEOF())

    def pause_writing(self) -> None:
        self._stream.pause_writing()

    def resume_writing(self) -> None:
        self._stream.resume_writing()

    # -- the reader's calls -------------------------------------------------------------------

    def _message(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        take = self._takers.get(sid)
        if take is None or self._queue or self._busy:
            self._enqueue(None, (sid, subject, reply, data, headers))
            return
        stats = self._client.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            take(subject, reply, data, headers)
        except Exception:
            # A bug of ours: logged, and the connection goes on being read.
            log.exception("NATS: taking a message failed")

    def _operation(self, op: str, argument: Any) -> None:
        if op != "+OK":  # nats-py does nothing with one
            self._enqueue(op, argument)

    def _enqueue(self, op: str | None, argument: Any) -> None:
        self._queue.append((op, argument))
        if len(self._queue) >= _MAX_QUEUED:
            self._socket.pause_reading()
            self._reading_paused = True
        self._wake()

    def _end(self, why: Exception) -> None:
        if self._ended is None:
            self._ended = why
            self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    # -- nats-py's side -----------------------------------------------------------------------

    async def run(self) -> None:
        """nats-py's read loop, in its task: its handlers awaited in order, and at the end
        of reading what nats-py's loop does then (`Client._process_op_err`, which
        reconnects). Returns when the connection closes or reconnects, as nats-py's does;
        a cancellation (nats-py's, on close or reconnection) ends it."""
        client: Any = self._client  # nats-py's private handlers
        loop = asyncio.get_running_loop()
        while True:
            while self._queue:
                op, argument = self._queue.popleft()
                self._busy = True
                try:
                    await self._handle(client, op, argument)
                except OSError as exc:
                    await client._process_op_err(exc)
                    return
                except Exception:
                    # nats-py's loop would stop reading here for good; this one reads on.
                    log.exception("NATS: handling %s failed", op or "a message")
                finally:
                    self._busy = False
            if self._reading_paused and self._ended is None:
                self._reading_paused = False
                self._socket.resume_reading()
            if client.is_closed or client.is_reconnecting:
                return
            why = self._ended
            if why is not None:
                if isinstance(why, UnexpectedEOF):
                    await client._error_cb(why)
                await client._process_op_err(why)
                return
            self._wakeup = loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None

    async def _handle(self, client: Any, op: str | None, argument: Any) -> None:
        if op is None:
            await client._process_msg(*argument)
        elif op == "PING":
            await client._process_ping()
        elif op == "PONG":
            await client._process_pong()
        elif op == "-ERR":
            await client._process_err(argument)
        else:  # INFO
            await client._process_info(argument)


def take_socket(client: Client, takers: dict[int, RawTaker]) -> SocketIntake | None:
    """A `SocketIntake` reading `client`'s connection from now on, or None where the
    connection is not what it expects: nats-py 2.x's `TcpTransport` over plain TCP (TLS
    and WebSocket connections are read by nats-py), an asyncio stream whose reader nothing
    has ended. Called at the start of nats-py's read loop, before anything awaits: the
    stream reader holds what came after the handshake, and it is read first."""
    transport = getattr(client, "_transport", None)
    if type(transport) is not TcpTransport:
        return None
    reader = getattr(transport, "_io_reader", None)
    writer = getattr(transport, "_io_writer", None)
    if not isinstance(reader, asyncio.StreamReader) or not isinstance(writer, asyncio.StreamWriter):
        return None
    socket: Any = writer.transport
    stream = socket.get_protocol()
    if (
        getattr(transport, "_bare_io_writer", None) is not writer  # upgraded to TLS
        or reader.at_eof()
        or reader.exception() is not None
        or not callable(getattr(socket, "set_protocol", None))  # (uvloop's is no asyncio.Transport)
        or socket.is_closing()
        or socket.get_extra_info("sslcontext") is not None
        or not isinstance(stream, asyncio.StreamReaderProtocol)
    ):
        return None
    buffer = getattr(reader, "_buffer", None)  # what it read and nobody took yet
    if not isinstance(buffer, bytearray):
        return None
    max_payload = getattr(client, "_max_payload", 0)
    intake = SocketIntake(
        client,
        stream,
        takers,
        socket,
        # A message is its header block and payload; max_payload bounds both together.
        max_message=max(max_payload if isinstance(max_payload, int) else 0, 1024 * 1024) * 2,
    )
    socket.set_protocol(intake)
    # Nothing runs between the swap and this: what the stream reader held is read first.
    held = bytes(buffer)
    buffer.clear()
    socket.resume_reading()  # the stream reader may have paused it, full
    if held:
        intake.data_received(held)
    return intake
