"""A running CRO (the real register handlers, SQLite store) on loopback, a real DSO participant
that collects the CRO's responses, and the tools to attack the CRO's endpoint: signed and
unsigned bodies, plain and raw HTTP, and the check that it still serves a valid message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, date, datetime
from typing import Any

from adapter.config import CroSettings
from adapter.cro import cro_router
from adapter.directory import Peer, StaticDirectory
from adapter.keys import PrivateKeys, generate
from adapter.participant import Participant
from adapter.router import HandlerContext, Router
from adapter.settings import Limits
from adapter.store import register_for
from adapter.store.register import PortfolioRegister
from adapter.testing import Network, PeerClient, eventually, post
from adapter.uftp import codec
from adapter.uftp.messages import (
    AGRPortfolioUpdateResponse,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    DSOPortfolioUpdateResponse,
    PayloadMessage,
    PayloadResponse,
    RedispatchBy,
    Result,
    Role,
)

#: The endpoint's read timeout in these tests (the default is 30 s).
READ_TIMEOUT_S = 1.0

CRO = "cro.example.com"
DSO = "dso.example-grid.nl"
#: A second DSO the CRO knows (its key is in the CRO's directory); it never runs.
DSO2 = "dso2.example.com"
CP = "ea1.2024-01.nl.example-grid:cp-hostile"
EANS = ("ean.871685900000000011", "ean.871685900000000028")
XML = {"Content-Type": "text/xml; charset=utf-8"}

#: Bound for the answer to any hostile request that is not about slowness: the real cost is
#: milliseconds; this only catches an expansion or a wait that should not happen.
ANSWER_WITHIN_S = 3.0


def rss_bytes() -> int:
    """This process's current resident set size (the endpoint runs in it)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class RawResponse:
    """What a raw HTTP exchange got back: a status (None: the connection closed without one)."""

    status: int | None
    head: bytes
    seconds: float


class Harness:
    """The CRO under attack, the DSO it answers, and helpers to talk to the CRO."""

    def __init__(
        self,
        network: Network,
        cro: Participant,
        dso: Participant,
        register: PortfolioRegister,
        dso2_keys: PrivateKeys,
    ) -> None:
        self.network = network
        self.cro = cro
        self.dso = dso
        self.register = register
        self.dso2_keys = dso2_keys
        self.responses: list[PayloadResponse] = []

    # -- messages ---------------------------------------------------------------------------

    @property
    def dso_keys(self) -> PrivateKeys:
        return self.network.keys[DSO]

    def update(self, **changes: Any) -> DSOPortfolioUpdate:
        """A DSOPortfolioUpdate the real CRO accepts: fresh identifiers, TimeStamp now."""
        point = DSOPortfolioUpdateCongestionPoint(
            entity_address=CP,
            start_period=date(2024, 1, 1),
            end_period=None,
            mutex_offers_supported=True,
            day_ahead_redispatch_by=RedispatchBy.DSO,
            connections=tuple(DSOPortfolioUpdateConnection(ean, date(2024, 1, 1)) for ean in EANS),
        )
        fields: dict[str, Any] = {
            "version": "3.1.0",
            "sender_domain": DSO,
            "recipient_domain": CRO,
            "time_stamp": datetime.now(UTC),
            "message_id": str(uuid.uuid4()),
            "conversation_id": str(uuid.uuid4()),
            "time_zone": "Europe/Amsterdam",
            "congestion_points": (point,),
        }
        fields.update(changes)
        return DSOPortfolioUpdate(**fields)

    def inner(self, message: PayloadMessage | None = None, **changes: Any) -> bytes:
        """The inner XML of `message` (default: a fresh valid update), schema-checked."""
        return codec.encode(message if message is not None else self.update(**changes))

    def seal(
        self,
        inner: bytes | PayloadMessage,
        *,
        domain: str = DSO,
        role: Role = Role.DSO,
        secret: bytes | None = None,
    ) -> bytes:
        """A SignedMessage around `inner` (bytes as they are, or a message encoded)."""
        return PeerClient(DSO, Role.DSO, self.dso_keys).seal(
            inner, domain=domain, role=role, secret=secret
        )

    # -- talking to the CRO -----------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.cro.port

    @property
    def path(self) -> str:
        return "/shapeshifter/api/v3/message"

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return await post(self.cro.url(), body, headers)

    async def raw(
        self,
        head: bytes,
        body: Iterable[bytes] = (),
        *,
        pause: float = 0.0,
        timeout: float = ANSWER_WITHIN_S,
    ) -> RawResponse:
        """Send `head` (request line and headers, CRLF-terminated) then `body` chunk by chunk,
        `pause` seconds apart, and read the response head; stops sending once it arrives."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        started = time.monotonic()
        try:
            writer.write(head)
            answer = asyncio.ensure_future(read_head(reader))
            for chunk in body:
                if answer.done():
                    break
                writer.write(chunk)
                try:
                    await writer.drain()
                except ConnectionError:
                    break
                if pause:
                    await asyncio.wait({answer}, timeout=pause)
            raw_head = await asyncio.wait_for(answer, timeout)
            return RawResponse(status_of(raw_head), raw_head, time.monotonic() - started)
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    def request_head(
        self,
        *,
        length: int | None,
        content_type: str | None = "text/xml; charset=utf-8",
        extra: str = "",
        version: str = "HTTP/1.1",
    ) -> bytes:
        lines = [f"POST {self.path} {version}", f"Host: 127.0.0.1:{self.port}"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        if extra:
            lines.append(extra)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # -- what came back ---------------------------------------------------------------------

    def responses_to(self, message_id: str) -> list[PayloadResponse]:
        return [r for r in self.responses if r.reference_message_id == message_id]

    async def response_to(self, message_id: str, *, timeout: float = 10.0) -> PayloadResponse:
        await eventually(lambda: bool(self.responses_to(message_id)), timeout=timeout)
        return self.responses_to(message_id)[0]

    async def rejection_of(self, body: bytes, message_id: str) -> str:
        """POST `body` (which must get 200) and the RejectionReason of the Rejected answer."""
        status, text = await self.post(body)
        assert status == 200, text
        response = await self.response_to(message_id)
        assert response.result is Result.REJECTED, "expected a Rejected response"
        assert response.rejection_reason
        return response.rejection_reason

    async def assert_still_serving(self, *, handled_before: int = 0) -> None:
        """A valid update now gets 200 and an Accepted response, and nothing but it (and the
        `handled_before` updates the test expects) reached the register or was answered."""
        message = self.update()
        status, text = await self.post(self.seal(message))
        assert status == 200, f"a valid message after the attack got {status}: {text}"
        response = await self.response_to(message.message_id)
        assert response.result is Result.ACCEPTED, response.rejection_reason
        applied = await self.register.updates()
        assert [u.message_id for u in applied][-1] == message.message_id
        assert len(applied) == handled_before + 1, "the attack reached the register"


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The response's status line and headers; b"" when the server closed without one."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except ConnectionError:
        return b""


def status_of(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    return int(parts[1])


@asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback TCP server that records whatever connects to it: where an XXE would send
    the parser. Yields its port and the list of what each connection sent."""
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await asyncio.wait_for(reader.read(4096), 1.0))
        except (TimeoutError, ConnectionError):
            seen.append(b"")
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


async def start(network: Network, **limits: Any) -> Harness:
    """The CRO as configured by default, but for the read timeout, shortened for the slow-body
    case, and `limits` (fields of `Limits`)."""
    settings = Limits(**({"read_timeout_seconds": READ_TIMEOUT_S} | limits))
    cro = network.create(CRO, Role.CRO, limits=settings)
    register = register_for(cro.store)
    cro.router.include(cro_router(register, CroSettings()))
    dso_router = Router()
    responses: list[PayloadResponse] = []

    async def collect(message: PayloadResponse, ctx: HandlerContext) -> None:
        responses.append(message)

    for kind in (DSOPortfolioUpdateResponse, AGRPortfolioUpdateResponse, DSOPortfolioQueryResponse):
        dso_router.on(kind)(collect)
    dso = network.create(DSO, Role.DSO, router=dso_router)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    dso2_keys = generate()
    directory = cro.directory
    assert isinstance(directory, StaticDirectory)
    directory.add(Peer(DSO2, Role.DSO, "http://127.0.0.1:9/", (dso2_keys.public.signing,)))
    harness = Harness(network, cro, dso, register, dso2_keys)
    harness.responses = responses
    return harness
