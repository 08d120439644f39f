"""Hostile input against a running endpoint: a real CRO participant (register handlers, SQLite)
on loopback, attacked over HTTP, with a real DSO participant receiving its Rejected responses.

Every case asserts the answer the spec prescribes - the HTTP status of the error table in
message-transport-mechanism.md ("Error handling") or the RejectionReason of
message-validation.md - and then that the endpoint still serves: a valid DSOPortfolioUpdate
sent afterwards gets 200 and an Accepted response, and nothing of the attack reached the
register. Each case's expected answer is in its id (`name->answer`) or its docstring.

Parser-level variants of the XML attacks are in tests/uftp/test_xml_hardening.py; here each
attack travels the whole pipeline once, in the envelope and (validly signed) in the inner
message.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from adapter.directory import StaticDirectory
from adapter.keys import generate
from adapter.participant import Participant
from adapter.settings import Limits
from adapter.store.sqlite import SqliteStore
from adapter.testing import Network
from adapter.uftp.messages import (
    AGRPortfolioUpdate,
    AGRPortfolioUpdateConnection,
    PayloadMessage,
    Result,
    Role,
)

from .harness import (
    ANSWER_WITHIN_S,
    CRO,
    DSO,
    DSO2,
    READ_TIMEOUT_S,
    XML,
    Harness,
    listener,
    rss_bytes,
    start,
)

MiB = 1024 * 1024


@pytest.fixture
async def h(network: Network) -> Harness:
    return await start(network)


@dataclasses.dataclass(frozen=True)
class Env:
    """Where an XXE may point: a secret file, and a loopback port that records connections."""

    secret: str
    secret_url: str
    port: int
    connections: list[bytes]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    secret = "hostile-secret-7f3a9c"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    async with listener() as (port, connections):
        yield Env(secret, path.as_uri(), port, connections)


# ============================================================================================
# Body builders
# ============================================================================================


def envelope_doc(body: str, *, prolog: str = "", content: str = "") -> bytes:
    """A SignedMessage from the DSO with `body` as its Body attribute."""
    tail = f">{content}</SignedMessage>" if content else "/>"
    return (
        f'{prolog}<SignedMessage SenderDomain="{DSO}" SenderRole="DSO" Body="{body}"{tail}'
    ).encode()


def valid_body(h: Harness) -> str:
    """The base64 Body of a validly signed, valid update."""
    sealed = h.seal(h.update())
    return sealed.split(b'Body="')[1].split(b'"')[0].decode("ascii")


def with_doctype(inner: bytes, subset: str, *, reference: str | None = None) -> bytes:
    """`inner` with an internal DTD subset and, optionally, `reference` as its TimeZone."""
    root = inner.split(b"<", 2)[2].split(b" ", 1)[0].decode()
    head, rest = inner.split(b"?>", 1)
    doc = head + b"?>" + f"<!DOCTYPE {root} [{subset}]>".encode() + rest
    if reference is not None:
        doc = doc.replace(b'TimeZone="Europe/Amsterdam"', f'TimeZone="{reference}"'.encode(), 1)
    return doc


def billion_laughs(levels: int = 10) -> str:
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return "".join(entities)


QUADRATIC_SIZE = 50_000
QUADRATIC_SUBSET = f'<!ENTITY a "{"a" * QUADRATIC_SIZE}">'
QUADRATIC_REFERENCES = "&a;" * QUADRATIC_SIZE
DEPTH = 100_000
NESTED = "<x>" * DEPTH + "</x>" * DEPTH


def inner_attack(h: Harness, subset: str, reference: str | None = None) -> bytes:
    """A validly signed envelope whose inner update carries `subset` (and `reference`)."""
    return h.seal(with_doctype(h.inner(), subset, reference=reference))


def inner_content(h: Harness, content: bytes) -> bytes:
    """A validly signed update with `content` right inside its root element."""
    inner = h.inner()
    anchor = b'TimeZone="Europe/Amsterdam">'
    assert anchor in inner
    return h.seal(inner.replace(anchor, anchor + content, 1))


def inner_value(attribute: str, value: str, nth: int = 0) -> Callable[[Harness, Env], bytes]:
    """A validly signed update whose `nth` `attribute` (in document order) holds `value`."""

    def build(h: Harness, env: Env) -> bytes:
        inner = h.inner()
        matches = list(re.finditer(f' {attribute}="([^"]*)"'.encode(), inner))
        start, end = matches[nth].span(1)
        return h.seal(inner[:start] + value.encode() + inner[end:])

    return build


def latin1_inner(h: Harness, env: Env) -> bytes:
    text = h.inner().decode().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    text = text.replace("?>", "?><!-- caf\u00e9 -->", 1)
    return h.seal(text.encode("latin-1"))


def latin1_inner_attribute(h: Harness, env: Env) -> bytes:
    # EntityAddress admits any character after the prefix; the byte 0xE9 is not UTF-8.
    text = h.inner().decode().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    text = text.replace(":cp-hostile", ":caf\u00e9", 1)
    return h.seal(text.encode("latin-1"))


def utf16_inner(h: Harness, env: Env) -> bytes:
    text = h.inner().decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    return h.seal(text.encode("utf-16"))  # with a byte order mark


def utf16_inner_without_bom(h: Harness, env: Env) -> bytes:
    text = h.inner().decode().replace('encoding="UTF-8"', 'encoding="UTF-16LE"')
    return h.seal(text.encode("utf-16-le"))


def utf16_envelope(h: Harness, env: Env) -> bytes:
    text = h.seal(h.update()).decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
    return text.encode("utf-16")


def truncated_document(h: Harness, env: Env) -> bytes:
    body = h.seal(h.update())
    return body[: len(body) // 2]


def body_cut(keep: Callable[[str], str]) -> Callable[[Harness, Env], bytes]:
    def build(h: Harness, env: Env) -> bytes:
        return envelope_doc(keep(valid_body(h)))

    return build


def altered_after_signing(h: Harness, env: Env) -> bytes:
    sealed = bytearray(base64.b64decode(valid_body(h)))
    sealed[-10] ^= 0x01  # one bit of the inner XML, after the signature was made
    return envelope_doc(base64.b64encode(bytes(sealed)).decode("ascii"))


def signed_by_stranger(h: Harness, env: Env) -> bytes:
    return h.seal(h.update(), secret=generate().signing)


def signed_by_other_known_peer(h: Harness, env: Env) -> bytes:
    # DSO2's key is in the CRO's directory, but under DSO2, not under the claimed DSO.
    return h.seal(h.update(), secret=h.dso2_keys.signing)


def unknown_sender(h: Harness, env: Env) -> bytes:
    stranger = generate()
    message = h.update(sender_domain="dso9.example.org")
    return h.seal(message, domain="dso9.example.org", secret=stranger.signing)


def envelope_role(role: Role) -> Callable[[Harness, Env], bytes]:
    def build(h: Harness, env: Env) -> bytes:
        return h.seal(h.update(), role=role)  # the DSO's own key, but not its configured role

    return build


@dataclasses.dataclass(frozen=True)
class StatusCase:
    name: str
    status: int
    build: Callable[[Harness, Env], bytes]

    def param(self) -> object:
        return pytest.param(self, id=f"{self.name}->{self.status}")


STATUS_CASES = [
    # -- XML attacks on the SignedMessage, read before any signature is checked: 400 ------
    StatusCase(
        "envelope-xxe-file",
        400,
        lambda h, env: envelope_doc(
            "&e;", prolog=f'<!DOCTYPE SignedMessage [<!ENTITY e SYSTEM "{env.secret_url}">]>'
        ),
    ),
    StatusCase(
        "envelope-xxe-network",
        400,
        lambda h, env: envelope_doc(
            "&e;",
            prolog=(
                f'<!DOCTYPE SignedMessage [<!ENTITY e SYSTEM "http://127.0.0.1:{env.port}/x">]>'
            ),
        ),
    ),
    StatusCase(
        "envelope-xxe-parameter-entity-network",
        400,
        lambda h, env: envelope_doc(
            valid_body(h),
            prolog=(
                f'<!DOCTYPE SignedMessage [<!ENTITY % p SYSTEM "http://127.0.0.1:{env.port}/p">'
                " %p;]>"
            ),
        ),
    ),
    StatusCase(
        "envelope-xxe-external-dtd",
        400,
        lambda h, env: envelope_doc(
            valid_body(h),
            prolog=f'<!DOCTYPE SignedMessage SYSTEM "http://127.0.0.1:{env.port}/x.dtd">',
        ),
    ),
    StatusCase(
        "envelope-billion-laughs",
        400,
        lambda h, env: envelope_doc(
            "&lol9;", prolog=f"<!DOCTYPE SignedMessage [{billion_laughs()}]>"
        ),
    ),
    StatusCase(
        "envelope-quadratic-blowup",
        400,
        lambda h, env: envelope_doc(
            QUADRATIC_REFERENCES, prolog=f"<!DOCTYPE SignedMessage [{QUADRATIC_SUBSET}]>"
        ),
    ),
    StatusCase(
        "envelope-deeply-nested", 400, lambda h, env: envelope_doc(valid_body(h), content=NESTED)
    ),
    StatusCase(
        "envelope-7340032-child-elements",
        400,
        lambda h, env: envelope_doc(valid_body(h), content="<a/>" * 7_340_032),
    ),
    StatusCase(
        "envelope-60000-attributes",
        400,
        lambda h, env: envelope_doc(valid_body(h)).replace(
            b"/>", b" " + b" ".join(b'a%d="x"' % i for i in range(60_000)) + b"/>"
        ),
    ),
    StatusCase("envelope-utf16", 400, utf16_envelope),
    StatusCase("envelope-truncated-document", 400, truncated_document),
    # -- the Body ----------------------------------------------------------------------------
    StatusCase("body-truncated-mid-base64", 400, body_cut(lambda b: b[: len(b) // 8 * 4 + 2])),
    StatusCase("body-not-base64", 400, lambda h, env: envelope_doc("!!!not*base64!!!")),
    StatusCase("body-non-ascii", 400, lambda h, env: envelope_doc("w6k=\u00e9")),
    StatusCase("body-truncated-at-a-quantum", 401, body_cut(lambda b: b[: len(b) // 8 * 4])),
    StatusCase("body-shorter-than-a-signature", 401, body_cut(lambda b: b[:40])),
    # -- signature and sender: 401 -------------------------------------------------------------
    StatusCase("signature-by-a-stranger-key", 401, signed_by_stranger),
    StatusCase("signature-by-another-known-peer-key", 401, signed_by_other_known_peer),
    StatusCase("inner-altered-after-signing", 401, altered_after_signing),
    StatusCase("unknown-sender-domain", 401, unknown_sender),
    StatusCase("envelope-sender-role-agr-not-configured", 401, envelope_role(Role.AGR)),
    StatusCase("envelope-sender-role-cro-not-configured", 401, envelope_role(Role.CRO)),
    # -- XML attacks in the validly signed inner message: 400 ------------------------------
    StatusCase(
        "inner-xxe-file",
        400,
        lambda h, env: inner_attack(h, f'<!ENTITY e SYSTEM "{env.secret_url}">', "&e;"),
    ),
    StatusCase(
        "inner-xxe-network",
        400,
        lambda h, env: inner_attack(
            h, f'<!ENTITY e SYSTEM "http://127.0.0.1:{env.port}/x">', "&e;"
        ),
    ),
    StatusCase(
        "inner-xxe-parameter-entity-network",
        400,
        lambda h, env: inner_attack(h, f'<!ENTITY % p SYSTEM "http://127.0.0.1:{env.port}/p"> %p;'),
    ),
    StatusCase(
        "inner-billion-laughs", 400, lambda h, env: inner_attack(h, billion_laughs(), "&lol9;")
    ),
    StatusCase(
        "inner-quadratic-blowup",
        400,
        lambda h, env: inner_attack(h, QUADRATIC_SUBSET, QUADRATIC_REFERENCES),
    ),
    StatusCase("inner-deeply-nested", 400, lambda h, env: inner_content(h, NESTED.encode())),
    StatusCase(
        "inner-xinclude",
        400,
        lambda h, env: inner_content(
            h,
            f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{env.secret_url}"'
            ' parse="text"/>'.encode(),
        ),
    ),
    # -- inner message not UTF-8: 400 ------------------------------------------------------
    StatusCase("inner-latin1-declared-iso-8859-1", 400, latin1_inner),
    StatusCase("inner-latin1-byte-in-entity-address", 400, latin1_inner_attribute),
    StatusCase("inner-utf16-with-bom", 400, utf16_inner),
    StatusCase("inner-utf16le-without-bom", 400, utf16_inner_without_bom),
    # -- malformed values in the validly signed inner message: 400 -------------------------
    StatusCase("inner-message-id-not-a-uuid", 400, inner_value("MessageID", "not-a-uuid")),
    StatusCase(
        "inner-message-id-braced-uuid",
        400,
        inner_value("MessageID", "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}"),
    ),
    StatusCase(
        "inner-conversation-id-too-long",
        400,
        inner_value("ConversationID", "3f2504e0-4f89-11d3-9a0c-0305e82c33011"),
    ),
    StatusCase("inner-time-stamp-month-13", 400, inner_value("TimeStamp", "2024-13-01T00:00:00Z")),
    StatusCase("inner-time-stamp-hour-24", 400, inner_value("TimeStamp", "2024-05-01T24:00:00Z")),
    StatusCase(
        "inner-time-stamp-year-10000", 400, inner_value("TimeStamp", "10000-05-01T10:00:00Z")
    ),
    StatusCase("inner-time-stamp-not-a-date", 400, inner_value("TimeStamp", "yesterday")),
    StatusCase("inner-start-period-february-30", 400, inner_value("StartPeriod", "2024-02-30")),
    StatusCase("inner-start-period-year-10000", 400, inner_value("StartPeriod", "10000-01-01")),
    StatusCase(
        "inner-start-period-with-a-time", 400, inner_value("StartPeriod", "2024-01-01T00:00:00")
    ),
    StatusCase(
        "inner-connection-entity-address-ean-too-short",
        400,
        inner_value("EntityAddress", "ean.12345", nth=1),
    ),
    StatusCase(
        "inner-congestion-point-entity-address-unknown-scheme",
        400,
        inner_value("EntityAddress", "ea2.2024-01.nl.example:x"),
    ),
    StatusCase(
        "inner-connection-entity-address-empty", 400, inner_value("EntityAddress", "", nth=2)
    ),
]


@pytest.mark.parametrize("case", [case.param() for case in STATUS_CASES])
async def test_hostile_body_is_refused_with_its_status(
    h: Harness, env: Env, case: StatusCase
) -> None:
    body = case.build(h, env)
    started = time.monotonic()
    status, text = await h.post(body)
    assert (status, case.name) == (case.status, case.name), text
    assert time.monotonic() - started < ANSWER_WITHIN_S
    assert env.secret not in text
    assert env.connections == [], "the parser reached out to the network"
    await h.assert_still_serving()
    assert len(h.responses) == 1, "the attack was answered with a response message"


# ============================================================================================
# Verified and schema-valid, but refused by the protocol checks: HTTP 200, then Rejected
# ============================================================================================


def agr_update_from_the_dso(h: Harness) -> PayloadMessage:
    """An AGRPortfolioUpdate, which only an AGR may send, signed by the DSO as DSO."""
    base = h.update()
    return AGRPortfolioUpdate(
        version="3.1.0",
        sender_domain=DSO,
        recipient_domain=CRO,
        time_stamp=base.time_stamp,
        message_id=base.message_id,
        conversation_id=base.conversation_id,
        time_zone="Europe/Amsterdam",
        connections=(AGRPortfolioUpdateConnection("ean.871685900000000011", date(2024, 1, 1)),),
    )


@dataclasses.dataclass(frozen=True)
class RejectionCase:
    name: str
    reason: str
    message: Callable[[Harness], PayloadMessage]

    def param(self) -> object:
        return pytest.param(self, id=f"{self.name}->{self.reason}")


REJECTION_CASES = [
    RejectionCase(
        "inner-sender-domain-another-known-dso",
        "Mismatch SenderDomain",
        lambda h: h.update(sender_domain=DSO2),
    ),
    RejectionCase(
        "inner-sender-domain-unknown",
        "Mismatch SenderDomain",
        lambda h: h.update(sender_domain="dso9.example.org"),
    ),
    RejectionCase("agr-message-from-a-dso", "Invalid SenderRole", agr_update_from_the_dso),
    RejectionCase(
        "recipient-domain-another-cro",
        "Unknown RecipientDomain",
        lambda h: h.update(recipient_domain="cro2.example.com"),
    ),
    RejectionCase(
        "version-3.0.0-not-configured",
        "Unsupported Version",
        lambda h: h.update(version="3.0.0"),
    ),
    RejectionCase(
        "version-99.0.0-unknown", "Unsupported Version", lambda h: h.update(version="99.0.0")
    ),
    RejectionCase(
        "version-in-arabic-indic-digits",
        "Unsupported Version",
        lambda h: h.update(version="\u0663.\u0661.\u0660"),  # \d matches them in XSD patterns
    ),
]


@pytest.mark.parametrize("case", [case.param() for case in REJECTION_CASES])
async def test_protocol_violation_is_rejected_with_its_reason(
    h: Harness, case: RejectionCase
) -> None:
    message = case.message(h)
    assert await h.rejection_of(h.seal(message), message.message_id) == case.reason
    assert await h.register.updates() == [], "a rejected message changed the register"
    await h.assert_still_serving()


# ============================================================================================
# Transport: headers and how the body arrives (raw HTTP, so that nothing fixes the request)
# ============================================================================================


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/html",
        "application/x-www-form-urlencoded",
        "application/soap+xml",
        "multipart/form-data; boundary=x",
        "text/xml; charset=windows-1252",
        "application/xml; charset=latin1",
    ],
    ids=lambda value: f"{value or 'no-content-type'}->400",
)
async def test_wrong_content_type_is_400(h: Harness, content_type: str | None) -> None:
    body = h.seal(h.update())
    response = await h.raw(h.request_head(length=len(body), content_type=content_type), [body])
    assert response.status == 400
    await h.assert_still_serving()


def chunked(body: bytes) -> list[bytes]:
    return [f"{len(body):x}\r\n".encode() + body + b"\r\n", b"0\r\n\r\n"]


async def test_chunked_body_without_content_length_is_411(h: Harness) -> None:
    """Transfer-Encoding: chunked, no Content-Length -> 411."""
    body = h.seal(h.update())
    head = h.request_head(length=None, extra="Transfer-Encoding: chunked")
    assert (await h.raw(head, chunked(body))).status == 411
    await h.assert_still_serving()


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
async def test_no_content_length_and_no_body_is_411(h: Harness, version: str) -> None:
    """A POST without Content-Length (nor a body) -> 411, in HTTP/1.1 and HTTP/1.0."""
    head = h.request_head(length=None, version=version, extra="Connection: close")
    assert (await h.raw(head)).status == 411
    await h.assert_still_serving()


async def test_http10_body_without_content_length_is_400(h: Harness) -> None:
    """An HTTP/1.0 request whose body follows without Content-Length -> 400, from the HTTP
    layer before the endpoint sees it: HTTP gives such a request no body (RFC 9112, 6.3), so
    the bytes that follow are a second, malformed request, and RFC 1945 (7.2.2) prescribes 400
    when the length of a body cannot be determined. The spec's 411 needs a request the server
    can tell has no Content-Length (the test above)."""
    body = h.seal(h.update())
    head = h.request_head(length=None, version="HTTP/1.0", extra="Connection: close")
    assert (await h.raw(head, [body])).status == 400
    await h.assert_still_serving()


@pytest.mark.parametrize(
    "extra",
    ["Transfer-Encoding: chunked", "Content-Length: 1"],
    ids=["content-length-and-chunked->400", "two-content-lengths->400"],
)
async def test_ambiguous_framing_is_400(h: Harness, extra: str) -> None:
    """Request smuggling shapes (RFC 9112, 6.3): refused by the HTTP layer with 400, never read
    as a message."""
    body = h.seal(h.update())
    head = h.request_head(length=len(body), extra=extra)
    assert (await h.raw(head, chunked(body))).status == 400
    await h.assert_still_serving()


async def test_negative_content_length_is_400(h: Harness) -> None:
    """Content-Length: -1 -> 400."""
    head = h.request_head(length=None, extra="Content-Length: -1")
    assert (await h.raw(head, [b"<"])).status == 400
    await h.assert_still_serving()


async def test_100_mb_body_is_413_before_it_is_read(h: Harness) -> None:
    """A streamed 100 MB body (32 MB is the participant's default cap) -> 413, answered from
    the Content-Length alone: the answer arrives while the client is still sending, quickly,
    and the server's memory does not grow by anything like the body."""
    total = 100 * MiB
    sent = 0

    def stream() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"<" * MiB
        while sent < total:
            sent += len(chunk)
            yield chunk

    rss_before = rss_bytes()
    response = await h.raw(h.request_head(length=total), stream(), timeout=10.0)
    growth = rss_bytes() - rss_before
    print(
        f"100 MB body: HTTP {response.status} after {response.seconds:.3f} s,"
        f" {sent / MiB:.0f} MiB sent, RSS +{growth / MiB:.1f} MiB"
    )
    assert response.status == 413
    assert sent < total, "the server only answered once the whole body was sent"
    assert response.seconds < ANSWER_WITHIN_S
    assert growth < 50 * MiB
    await h.assert_still_serving()


@functools.cache
def gzip_bomb(inflated: int = 256 * MiB) -> bytes:
    """`inflated` zero bytes, gzip-compressed: about a thousand times smaller."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    parts = [compressor.compress(zeros) for _ in range(inflated // MiB)]
    return b"".join(parts) + compressor.flush()


@pytest.mark.parametrize(
    "coding",
    ["gzip", "deflate", "br", "x-gzip", "identity, gzip", "GZIP"],
    ids=lambda coding: f"{coding}->415",
)
async def test_a_content_encoding_other_than_identity_is_415(h: Harness, coding: str) -> None:
    """The spec defines no content coding: a compressed body is refused unread, with the
    coding that would have been accepted (RFC 9110, 15.5.16)."""
    body = h.seal(h.update())
    head = h.request_head(length=len(body), extra=f"Content-Encoding: {coding}")
    response = await h.raw(head, [body])
    assert response.status == 415, response.head
    assert b"\r\naccept-encoding: identity\r\n" in response.head.lower()
    await h.assert_still_serving()


async def test_identity_content_encoding_is_accepted(h: Harness) -> None:
    message = h.update()
    status, text = await h.post(h.seal(message), {**XML, "Content-Encoding": "identity"})
    assert status == 200, text
    await h.response_to(message.message_id)


async def test_a_gzip_bomb_is_refused_and_never_inflated(h: Harness) -> None:
    """256 MiB of zeros in 256 KB of gzip, with a request after it on the same connection:
    415, and the endpoint reads past the bomb to the next request without inflating it
    (aiohttp would inflate it as it arrives and while it discards a refused body)."""
    bomb = gzip_bomb()
    head = h.request_head(length=len(bomb), extra="Content-Encoding: gzip")
    health = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{h.port}\r\n\r\n".encode()
    rss_before = rss_bytes()
    cpu_before = time.process_time()
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
    try:
        writer.write(head + bomb + health)
        await writer.drain()
        answers = b""
        async with asyncio.timeout(ANSWER_WITHIN_S):
            while answers.count(b"HTTP/1.1 ") < 2 or not answers.endswith(b"\n"):
                answers += await reader.read(65536)
    finally:
        writer.close()
    cpu = time.process_time() - cpu_before
    growth = rss_bytes() - rss_before
    print(f"gzip bomb: {cpu:.3f} s of CPU, RSS +{growth / MiB:.1f} MiB")
    assert answers.startswith(b"HTTP/1.1 415 "), answers[:200]
    assert b"HTTP/1.1 200 OK" in answers, "the request after the bomb was not answered"
    assert cpu < 0.15, "the bomb was inflated"
    assert growth < 20 * MiB
    await h.assert_still_serving()


async def test_body_slower_than_the_read_timeout_is_408(h: Harness) -> None:
    """Headers with a Content-Length, then the body at 16 bytes every 0.2 s -> 408 (or the
    connection closed) once the read timeout passes; other senders are served meanwhile.

    The harness's CRO has a read timeout of READ_TIMEOUT_S (`limits.read_timeout_seconds`).
    """
    body = h.seal(h.update())
    trickle = (body[i : i + 16] for i in range(0, len(body), 16))
    slow = asyncio.ensure_future(
        h.raw(h.request_head(length=len(body)), trickle, pause=0.2, timeout=10.0)
    )
    await asyncio.sleep(0.3)
    await h.assert_still_serving()  # while the slow body is still trickling
    response = await slow
    print(f"slow body: HTTP {response.status} after {response.seconds:.2f} s")
    assert response.status in (408, None), response.head
    assert READ_TIMEOUT_S <= response.seconds < READ_TIMEOUT_S + 2.0
    await h.assert_still_serving(handled_before=1)


async def test_read_timeout_is_configurable(tmp_path: Path) -> None:
    participant = Participant(
        domain=CRO,
        role=Role.CRO,
        keys=generate(),
        store=SqliteStore(tmp_path / "cro.sqlite3"),
        directory=StaticDirectory([]),
        limits=Limits(read_timeout_seconds=READ_TIMEOUT_S),
    )
    assert participant._endpoint._read_timeout == READ_TIMEOUT_S


async def test_sender_vanishing_mid_body_is_no_server_error(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Content-Length 10,000, 100 bytes, then the connection closes: nothing to answer, and
    the endpoint must not treat it as its own failure (no 500, nothing logged as an error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
    writer.write(h.request_head(length=10_000) + b"<" * 100)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    with caplog.at_level(logging.ERROR, logger="adapter"):
        await asyncio.sleep(0.3)
        await h.assert_still_serving()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ============================================================================================
# Replays and TimeStamps
# ============================================================================================


async def test_replayed_envelope_is_200_and_handled_once(h: Harness) -> None:
    """The exact same SignedMessage again, at once and after it was answered -> 200 each
    time, handled and answered once (message-validation.md: "Already Submitted")."""
    message = h.update()
    body = h.seal(message)
    assert (await h.post(body))[0] == 200
    assert (await h.post(body))[0] == 200  # while the first copy may still be in its handler
    assert (await h.response_to(message.message_id)).result is Result.ACCEPTED
    assert (await h.post(body))[0] == 200  # once it was answered
    await h.assert_still_serving(handled_before=1)
    assert len(h.responses_to(message.message_id)) == 1
    applied = [u.message_id for u in await h.register.updates()]
    assert applied.count(message.message_id) == 1


async def test_replay_in_a_rewritten_envelope_is_handled_once(h: Harness) -> None:
    """The same signed Body in a SignedMessage written differently (attribute order, quotes,
    whitespace, an end tag) -> 200, handled once: the replay is recognised by the message,
    not by the envelope's bytes."""
    message = h.update()
    body = h.seal(message)
    assert (await h.post(body))[0] == 200
    assert (await h.response_to(message.message_id)).result is Result.ACCEPTED
    sealed = body.split(b'Body="')[1].split(b'"')[0].decode()
    rewritten = (
        f"<SignedMessage  Body='{sealed}'\n SenderRole='DSO' SenderDomain='{DSO}' ></SignedMessage>"
    ).encode()
    assert (await h.post(rewritten))[0] == 200
    await h.assert_still_serving(handled_before=1)
    assert len(h.responses_to(message.message_id)) == 1


async def test_schema_location_hints_are_not_fetched(h: Harness, env: Env) -> None:
    """xsi:schemaLocation and xsi:noNamespaceSchemaLocation pointing at a listening port ->
    200 and Accepted (the attributes are schema-valid), and nothing connects to the port."""
    url = f"http://127.0.0.1:{env.port}/x.xsd"
    message = h.update()
    anchor = b'<DSOPortfolioUpdate Version="3.1.0"'
    hints = (
        f'<DSOPortfolioUpdate xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xsi:schemaLocation="urn:x {url}" xsi:noNamespaceSchemaLocation="{url}"'
        ' Version="3.1.0"'
    ).encode()
    inner = h.inner(message)
    assert anchor in inner
    assert (await h.post(h.seal(inner.replace(anchor, hints, 1))))[0] == 200
    assert (await h.response_to(message.message_id)).result is Result.ACCEPTED
    assert env.connections == []
    await h.assert_still_serving(handled_before=1)


@pytest.mark.parametrize(
    "offset",
    [timedelta(days=3650), -timedelta(days=3650)],
    ids=["ten-years-ahead->Rejected", "ten-years-behind->Rejected"],
)
async def test_time_stamp_far_from_now_is_rejected(h: Harness, offset: timedelta) -> None:
    """A TimeStamp far outside the tolerance -> 200, then Rejected with a reason that names
    the TimeStamp (an "other reasonable cause" of message-validation.md)."""
    message = h.update(time_stamp=datetime.now(UTC) + offset)
    reason = await h.rejection_of(h.seal(message), message.message_id)
    assert "TimeStamp" in reason
    await h.assert_still_serving()


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param("0001-01-01T00:00:00+14:00", id="year-0-in-utc->next-update-Accepted"),
        pytest.param("9999-12-31T23:59:59-14:00", id="year-10000-in-utc->next-update-Accepted"),
    ],
)
async def test_time_stamp_beyond_the_calendar_in_utc_does_not_break_the_sender(
    h: Harness, stamp: str
) -> None:
    """Whatever the answer to the message itself (400, or 200 and Accepted or Rejected), the
    sender's next valid update is Accepted and the register's history stays readable."""
    message = h.update()
    inner = re.sub(rb'TimeStamp="[^"]*"', f'TimeStamp="{stamp}"'.encode(), h.inner(message))
    status, text = await h.post(h.seal(inner))
    assert status in (200, 400), text
    accepted = False
    if status == 200:
        accepted = (await h.response_to(message.message_id)).accepted
    await h.assert_still_serving(handled_before=int(accepted))
