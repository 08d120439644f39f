"""The command line's end of the admin socket (`adapter.ops.admin`): find a running `serve`
of the same configuration, and have it send a request or read the register.

`find_daemon` returns None when there is no socket, or a socket nobody answers on (a
`serve` that was killed left it behind): the command then runs standalone, as before. It
refuses - `AdminError` - a socket that is not safe to talk to (a symbolic link, another user's,
open to others) or that belongs to another participant or store: the message would be sent
in a name the operator did not mean.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp

from adapter.bulk import LARGE_MESSAGES
from adapter.config import Config
from adapter.errors import AdminError
from adapter.ops.admin import MAX_REQUEST_BYTES, PREFIX, fingerprint, not_our_socket
from adapter.printable import printable
from adapter.uftp import answers, codec
from adapter.uftp.messages import PayloadMessage, PayloadRequest, PayloadResponse

R = TypeVar("R", bound=PayloadResponse)

__all__ = ["AdminError", "Daemon", "find_daemon"]

log = logging.getLogger(__name__)

#: Seconds to connect and to hear who answers: a live serve answers at once.
CONNECT_TIMEOUT = 5.0
#: Seconds the daemon may take beyond the request's own timeout to say how it ended
#: (withdrawing a message waits for a POST on the wire to finish).
GRACE = 60.0


async def find_daemon(config: Config) -> Daemon | None:
    """The running serve of `config`, connected; None when there is none."""
    path = config.admin.socket
    if path is None:
        return None
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    problem = not_our_socket(info)
    if problem is None and info.st_mode & 0o077:
        problem = f"has mode {stat.filemode(info.st_mode)}"
    if problem is not None:
        raise AdminError(
            f"admin socket {path}: {problem}; only a socket of your own, srw-------, is used"
        )
    daemon = Daemon(path, config)
    try:
        identity = await daemon.identity()
    except aiohttp.ClientConnectorError as exc:
        await daemon.close()
        # Nothing listens: a serve that ended without removing it (killed). Standalone.
        log.info("admin socket %s: no serve answers (%s); running standalone", path, exc)
        return None
    except BaseException:
        await daemon.close()
        raise
    if identity.get("fingerprint") != fingerprint(config):
        await daemon.close()
        raise AdminError(
            f"admin socket {path}: the serve answering there (pid {identity.get('pid')!r}) "
            f"runs another participant or store than {config.path}"
        )
    daemon.pid = identity.get("pid")
    log.info("using the running serve (pid %s) through %s", daemon.pid, path)
    return daemon


class Daemon:
    """A connection to a running serve's admin socket."""

    def __init__(self, path: Path, config: Config) -> None:
        self.path = path
        self._config = config
        self.pid: object = None
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(path)),
            # Not ours to read: the daemon is ours, but the environment's proxy settings
            # have no business on a Unix socket.
            trust_env=False,
        )

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def identity(self) -> dict[str, Any]:
        return await self._call("GET", "identity", None, CONNECT_TIMEOUT)

    async def request(
        self, message: PayloadRequest[R], to: str, *, timeout: float, keep_trying: bool
    ) -> R | str:
        """Have the daemon send `message` to `to` and await its response, as
        `run.request_once` does standalone: the response, or the line that says why there is
        none."""
        body = {
            "message": self._placeholder(message),
            "to": to,
            "timeout": timeout,
            "keep_trying": keep_trying,
        }
        answer = await self._call("POST", "request", body, timeout + GRACE)
        xml = answer.get("response")
        if isinstance(xml, str):
            decoded = codec.decode(xml.encode("utf-8"), bulk=LARGE_MESSAGES)
            if not isinstance(decoded, PayloadResponse):
                raise AdminError(f"the running serve answered a {decoded.xml_name}, not a response")
            try:
                return message.response_from(decoded)
            except TypeError as exc:
                raise AdminError(f"the running serve answered wrongly: {exc}") from None
        return printable(_text(answer))

    async def flex_send(
        self,
        message: PayloadRequest[Any],
        to: str,
        *,
        timeout: float,
        keep_trying: bool,
        settle: dict[str, Any] | None,
    ) -> tuple[PayloadMessage, PayloadResponse] | str:
        """Have the daemon send a flex message recorded in its flex book, moving the entry
        `settle` names first (`adapter.ops.admin`, ``/v1/flex/send``): the message as sent
        and its response, or the line that says why there is none. LookupError when the
        entry to settle is no longer where it was (nothing sent)."""
        body = {
            "message": self._placeholder(message),
            "to": to,
            "timeout": timeout,
            "keep_trying": keep_trying,
            "settle": settle,
        }
        answer = await self._call("POST", "flex/send", body, timeout + GRACE)
        refused = answer.get("refused")
        if isinstance(refused, str):
            raise LookupError(printable(refused, 500))
        sent, xml = answer.get("sent"), answer.get("response")
        if isinstance(sent, str) and isinstance(xml, str):
            message_sent = codec.decode(sent.encode("utf-8"))
            response = codec.decode(xml.encode("utf-8"))
            if not isinstance(response, PayloadResponse):
                raise AdminError(f"the running serve answered a {response.xml_name}")
            return message_sent, response
        return printable(_text(answer))

    def _placeholder(self, message: PayloadRequest[Any]) -> str:
        """`message` as XML with the metadata the daemon replaces (`Participant.request`)
        but which the XML must have; the Version and ConversationID stay as chosen here."""
        settings = self._config.participant
        placeholder = answers.fill(
            message,
            version=message.version or settings.versions[0],
            sender_domain=settings.domain,
            recipient_domain=settings.domain,
            time_stamp=datetime.now(UTC),
            message_id=str(uuid.uuid4()),
            conversation_id=message.conversation_id or str(uuid.uuid4()),
        )
        return codec.encode(placeholder, validate=False).decode("utf-8")

    async def cro_show(
        self, *, dso: str | None, as_of: datetime | None, history: bool, form: str
    ) -> str:
        """The register as the running CRO's `cro show` prints it."""
        body = {
            "dso": dso,
            "as_of": as_of.isoformat() if as_of is not None else None,
            "history": history,
            "format": form,
        }
        return _text(await self._call("POST", "cro/show", body, None))

    async def _call(
        self, method: str, name: str, body: object, timeout: float | None
    ) -> dict[str, Any]:
        url = f"http://localhost{PREFIX}/{name}"
        limit = aiohttp.ClientTimeout(total=timeout, connect=CONNECT_TIMEOUT)
        try:
            return await self._exchange(method, url, body, limit)
        except aiohttp.ClientConnectorError:
            raise  # nothing listens: `find_daemon` runs standalone
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminError(
                f"the running serve (admin socket {self.path}) did not answer: "
                f"{printable(str(exc) or type(exc).__name__, 200)}"
            ) from None

    async def _exchange(
        self, method: str, url: str, body: object, limit: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        async with self._session.request(method, url, json=body, timeout=limit) as answer:
            if answer.status == 413:
                raise AdminError(
                    f"the message is larger than a running serve takes ({MAX_REQUEST_BYTES} bytes)"
                )
            if answer.content_length is not None and answer.content_length > MAX_REQUEST_BYTES:
                raise AdminError(
                    f"the running serve's answer is too large ({answer.content_length} bytes)"
                )
            raw = await answer.read()
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise AdminError(f"the running serve answered HTTP {answer.status} without JSON")
            if answer.status != 200:
                error = data.get("error")
                problem = printable(error if isinstance(error, str) else "no reason given", 500)
                raise AdminError(f"the running serve refused: {problem}")
            return data


def _text(answer: dict[str, Any]) -> str:
    text = answer.get("text")
    if not isinstance(text, str):
        raise AdminError("the running serve answered without text")
    return text
