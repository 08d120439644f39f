"""The admin socket of `serve`: how the command line uses a running participant.

A SQLite store admits one process, and a participant's port one listener, so `send`,
`dso publish`, `dso query`, `cro show` and the flex commands that send cannot open their own
participant beside a running `serve` of the same configuration. Through this socket they ask
the running one instead: it signs, stores and delivers the message, awaits the response as
its own, and hands it back (`adapter.ops.admin_client` is the other end).

Only the participant's own user may use it, for whoever connects may send in the
participant's name:

- it is a Unix socket in the filesystem, never a network address a peer could reach;
- it is created with mode 0600 (under umask 0177) and checked after creation: owned by us,
  no access for group or others; a symbolic link, a file that is not a socket, a socket of
  another user, or a folder others may write to (without the sticky bit) is refused and
  `serve` does not start;
- each connection's peer credentials (SO_PEERCRED) must name our own user, whatever the
  file's mode;
- requests are bounded (`MAX_REQUEST_BYTES`, `MAX_CONCURRENT` at once), and what the daemon
  answers carries the peer's response as XML for the command line to decode and print, as
  it prints one it received itself - escaped where a peer wrote it.

A socket left behind by a killed `serve` (nothing answers on it) is replaced at the next start,
and ignored by the command line meanwhile.

The protocol is HTTP/1.1 with JSON bodies, versioned by its path:

- ``GET /v1/identity``: whose socket this is - ``fingerprint`` (of role, domain and store;
  see `fingerprint`), ``pid``, ``domain``, ``role``, ``version``.
- ``POST /v1/request`` ``{"message": XML, "to": DOMAIN, "timeout": S, "keep_trying": B}``:
  send a request and await its response; ``{"response": XML}`` when one came, else
  ``{"text": LINE}`` saying what happened (as `send` says it standalone).
- ``POST /v1/flex/send`` ``{"message", "to", "timeout", "keep_trying", "settle"}``: as
  ``/v1/request``, for the flex commands: the message recorded in the flex book as it
  leaves (`adapter.flex.desk.send_recorded`), and ``settle`` (null, or ``{"direction",
  "peer", "message_id", "from": [STANDING...], "to": STANDING}``) moves that entry first -
  an offer to ordered as its order leaves. ``{"sent": XML, "response": XML}``, or
  ``{"text": LINE}``, or ``{"refused": LINE}`` when the entry is no longer where it was
  (nothing sent).
- ``POST /v1/cro/show`` ``{"dso", "as_of", "history", "format"}``: the register as
  `cro show` prints it, ``{"text": TEXT}``.
- An error: a 4xx or 5xx status with ``{"error": LINE}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import math
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from adapter.config import Config, ConfigError, SqliteStoreSettings
from adapter.errors import AdminError, DeliveryFailed, ResponseTimeout, UnknownPeer
from adapter.giving_up import gave_up
from adapter.participant import Participant
from adapter.printable import printable
from adapter.uftp import codec
from adapter.uftp.errors import UftpError
from adapter.uftp.messages import PayloadMessage, PayloadRequest, PayloadResponse, Role

__all__ = [
    "MAX_CONCURRENT",
    "MAX_REQUEST_BYTES",
    "AdminServer",
    "AdminSocketError",
    "bind_admin_socket",
    "fingerprint",
]

log = logging.getLogger(__name__)

#: The largest request body: a portfolio of some hundred thousand connections, as XML in JSON.
MAX_REQUEST_BYTES: Final = 256 * 1024 * 1024
#: Requests served at once; more are answered 503.
MAX_CONCURRENT: Final = 16
#: The path prefix of this version of the protocol.
PREFIX: Final = "/v1"


class AdminSocketError(ConfigError):
    """The admin socket cannot be created safely where the configuration puts it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"admin socket {path}", None, problem)


def fingerprint(config: Config) -> str:
    """Whose socket it is: a participant (role, domain) on a store. Hashed, because a
    PostgreSQL DSN may hold a password; the command line compares it with its own
    configuration's before it sends anything."""
    settings = config.participant
    store = settings.store
    where = (
        f"sqlite:{store.path.resolve()}" if isinstance(store, SqliteStoreSettings) else store.dsn
    )
    text = f"{settings.role.value}\n{settings.domain}\n{where}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bind_admin_socket(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600, owned by us; a stale one replaced.

    Raises `AdminSocketError` when the place is not safe (see the module's docstring) or a
    running process answers on it already."""
    folder = path.parent
    try:
        info = os.stat(folder)
    except OSError as exc:
        raise AdminSocketError(path, f"its folder cannot be used: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise AdminSocketError(path, f"{folder} is not a folder")
    if info.st_uid not in (os.geteuid(), 0):
        raise AdminSocketError(path, f"its folder {folder} belongs to another user")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise AdminSocketError(
            path, f"its folder {folder} is writable by others, who could replace the socket"
        )
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The mode comes from the umask at bind: never a moment with access for others. The
        # umask is the process's; a file another thread creates meanwhile is only the safer.
        previous = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(previous)
        created = os.lstat(path)
        if (
            not stat.S_ISSOCK(created.st_mode)
            or created.st_uid != os.geteuid()
            or created.st_mode & 0o077
        ):
            with contextlib.suppress(OSError):
                path.unlink()
            raise AdminSocketError(
                path, f"was created with mode {stat.filemode(created.st_mode)}; expected srw-------"
            )
        sock.listen(16)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise AdminSocketError(path, f"cannot be created: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale(path: Path) -> None:
    """Remove a socket left behind by a `serve` that no longer runs; refuse anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    problem = not_our_socket(info)
    if problem is not None:
        raise AdminSocketError(path, f"{problem}; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise AdminSocketError(path, f"cannot be checked: {exc.strerror or exc}") from None
    else:
        raise AdminSocketError(path, "another serve answers on it already")
    finally:
        probe.close()
    log.info("removing the admin socket %s left behind by a serve that no longer runs", path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def not_our_socket(info: os.stat_result) -> str | None:
    """What makes the file `info` (an lstat) not a socket of our own user, or None: a
    symbolic link is never followed, to a socket or anything else."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISSOCK(info.st_mode):
        return "exists and is not a socket"
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    return None


def peer_uid(request: web.Request) -> int | None:
    """The user id of the process at the other end of the request's connection."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    size = struct.calcsize("3i")
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return int(uid)


class BadRequest(AdminError):
    """A request the daemon does not take: answered 400 with this text."""


class AdminServer:
    """Serves the admin protocol for `participant` on `config.admin.socket`, from `start`
    to `stop`."""

    def __init__(self, config: Config, participant: Participant, path: Path) -> None:
        self._config = config
        self._participant = participant
        self.path = path
        self._fingerprint = fingerprint(config)
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def start(self) -> None:
        """Create the socket (`AdminSocketError` when it cannot be, safely) and serve."""
        self._sock = bind_admin_socket(self.path)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[self._owner_only])
        app.router.add_get(f"{PREFIX}/identity", self._identity)
        app.router.add_post(f"{PREFIX}/request", self._request)
        app.router.add_post(f"{PREFIX}/cro/show", self._cro_show)
        app.router.add_post(f"{PREFIX}/flex/send", self._flex_send)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, self._sock).start()
        except BaseException:
            await self.stop()
            raise
        log.info("admin socket at %s", self.path)

    async def stop(self) -> None:
        """Answer the requests still waiting (their messages stay in the outbox), stop
        serving, remove the socket."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    @web.middleware
    async def _owner_only(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        uid = peer_uid(request)
        if uid != os.geteuid():
            log.warning("admin socket: refused a connection of uid %s", uid)
            return _error(403, "only the participant's own user may use its admin socket")
        if self._slots.locked():
            return _error(503, f"busy: {MAX_CONCURRENT} requests are being served")
        async with self._slots:
            try:
                return await handler(request)
            except BadRequest as exc:
                return _error(400, str(exc))

    async def _identity(self, request: web.Request) -> web.Response:
        from adapter.ops.version import version

        return web.json_response(
            {
                "fingerprint": self._fingerprint,
                "pid": os.getpid(),
                "domain": self._participant.domain,
                "role": self._participant.role.value,
                "version": version(),
            }
        )

    async def _request(self, request: web.Request) -> web.Response:
        message, to, timeout, keep_trying = await _sending(await _json(request))
        return await self._awaited(
            self._participant.request(message, to=to, timeout=timeout), timeout, keep_trying
        )

    async def _flex_send(self, request: web.Request) -> web.Response:
        from adapter.flex.desk import book_of, send_recorded
        from adapter.flex.state import Direction, Standing

        if self._participant.role not in (Role.DSO, Role.AGR):
            return _error(404, f"this serve runs a {self._participant.role}, not a DSO or AGR")
        body = await _json(request)
        message, to, timeout, keep_trying = await _sending(body)
        book = book_of(self._participant)
        settle = None
        spec = _field(body, "settle", (dict, type(None)))
        if spec is not None:
            try:
                direction = Direction(_field(spec, "direction", str))
                from_ = tuple(Standing(value) for value in _field(spec, "from", list))
                to_standing = Standing(_field(spec, "to", str))
            except ValueError as exc:
                raise BadRequest(f"settle: {exc}") from None
            entry = await book.get(
                direction, _field(spec, "message_id", str), peer_domain=_field(spec, "peer", str)
            )
            if entry is None:
                return web.json_response({"refused": "the message to settle is not recorded"})
            settle = (entry, from_, to_standing)

        async def sending() -> tuple[PayloadMessage, PayloadResponse]:
            return await send_recorded(
                self._participant, book, message, to=to, timeout=timeout, settle=settle
            )

        try:
            return await self._awaited(sending(), timeout, keep_trying)
        except LookupError as exc:
            return web.json_response({"refused": str(exc)})

    async def _awaited(
        self,
        sending: Awaitable[PayloadResponse | tuple[PayloadMessage, PayloadResponse]],
        timeout: float,
        keep_trying: bool,
    ) -> web.Response:
        """The answer to a message being sent: the response (with the message as sent, for
        `send_recorded`), or the line that says why there is none; LookupError passes."""
        requesting = asyncio.ensure_future(sending)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({requesting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not requesting.done():
                requesting.cancel()
                with contextlib.suppress(BaseException):
                    await requesting
        if requesting.cancelled():
            return web.json_response(
                {
                    "text": "serve stopped before the response arrived; the message stays in "
                    "its outbox, delivered when it runs again"
                }
            )
        try:
            response = requesting.result()
        except ResponseTimeout as exc:
            text = await gave_up(
                self._participant, exc.message_id, timeout, keep_trying, serving=True
            )
            return web.json_response({"text": text})
        except DeliveryFailed as exc:
            return web.json_response({"text": f"not delivered: {exc}"})
        except UnknownPeer as exc:
            return web.json_response({"text": f"not sent: {exc}"})
        except UftpError as exc:  # our own mistake in the message (IncompleteMessage, ...)
            raise BadRequest(str(exc)) from None
        if isinstance(response, tuple):
            sent, answer = response
            return web.json_response(
                {
                    "sent": codec.encode(sent, validate=False).decode("utf-8"),
                    "response": codec.encode(answer, validate=False).decode("utf-8"),
                }
            )
        encoded = codec.encode(response, validate=False)
        return web.json_response({"response": encoded.decode("utf-8")})

    async def _cro_show(self, request: web.Request) -> web.Response:
        from adapter.cro.show import read_report, render_json, render_text

        if self._participant.role is not Role.CRO:
            return _error(404, f"this serve runs a {self._participant.role}, not a CRO")
        body = await _json(request)
        dso = _field(body, "dso", (str, type(None)))
        as_of_text = _field(body, "as_of", (str, type(None)))
        history = _field(body, "history", bool)
        form = _field(body, "format", str)
        if form not in ("text", "json"):
            raise BadRequest("format: expected text or json")
        try:
            as_of = datetime.fromisoformat(as_of_text) if as_of_text is not None else None
        except ValueError:
            raise BadRequest("as_of: expected an ISO instant") from None
        if as_of is not None and as_of.tzinfo is None:
            raise BadRequest("as_of: expected an instant with its offset")
        report = await read_report(
            self._config,
            dso=dso,
            as_of=as_of,
            history=history,
            store=self._participant.store,
        )
        text = render_json(report) if form == "json" else render_text(report)
        return web.json_response({"text": text})


async def _sending(body: dict[str, Any]) -> tuple[PayloadRequest[Any], str, float, bool]:
    """The message, recipient, timeout and keep_trying of a request to send one."""
    xml = _field(body, "message", str)
    to = _field(body, "to", str)
    timeout = _field(body, "timeout", (int, float))
    keep_trying = _field(body, "keep_trying", bool)
    if not math.isfinite(timeout):
        raise BadRequest("timeout: expected a finite number of seconds")
    try:
        # Off the event loop: a portfolio of many connections takes a while to read.
        message = await asyncio.to_thread(codec.decode, xml.encode("utf-8"))
    except UftpError as exc:
        raise BadRequest(f"message: {exc}") from None
    if not isinstance(message, PayloadRequest):
        raise BadRequest(f"message: a {message.xml_name} is not a request")
    return message, to, float(timeout), keep_trying


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("expected a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int: a timeout of `true` is not a number of seconds.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadRequest(f"{name}: missing or of the wrong type")
    return value


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": printable(text, 500)}, status=status)
