"""What the endpoint writes about what a peer sends: against a running CRO, with the logs of
the whole process captured at debug level.

What a peer controls is escaped in every log line, so that it never starts a line of its own;
a refusal's reason is logged at info level, cut short, and its detail - which may quote the
peer's values, a 64 KB one as well as an EntityAddress - only at debug level; identifiers
(MessageIDs, ConversationIDs, EntityAddresses: personal data in this domain) only at debug
level (privacy-and-security-by-design.md). And no response says which versions of Python and
aiohttp answer it.
"""

from __future__ import annotations

import logging
import re

import aiohttp
import pytest

from tests.conftest import Network

from .harness import CP, DSO, EANS, Harness, start

#: Characters that end or reorder a line somewhere: in a file, a terminal, a log viewer.
LINE_BREAKING = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
async def h(network: Network, caplog: pytest.LogCaptureFixture) -> Harness:
    caplog.set_level(logging.DEBUG)
    return await start(network)


def logged(caplog: pytest.LogCaptureFixture, *, above_debug: bool = False) -> list[str]:
    level = logging.INFO if above_debug else logging.DEBUG
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.mark.parametrize(
    "breaker",
    ["&#10;", "&#13;", "\u2028", "\u0085", "\u202e", "&#10;&#13;\u2029"],
    ids=["line-feed", "carriage-return", "u2028", "u0085", "u202e", "several"],
)
async def test_a_line_break_in_an_unverified_sender_domain_forges_no_log_line(
    h: Harness, caplog: pytest.LogCaptureFixture, breaker: str
) -> None:
    forged = "2025-01-01 00:00:00 INFO adapter.server: inbound DSOPortfolioUpdate accepted"
    body = h.seal(h.update()).replace(
        f'SenderDomain="{DSO}"'.encode(), f'SenderDomain="{DSO}{breaker}{forged}"'.encode()
    )
    status, _ = await h.post(body)
    assert status == 400
    lines = logged(caplog)
    assert [line for line in lines if LINE_BREAKING.search(line)] == []
    assert any("inbound refused: HTTP 400" in line for line in lines)


async def test_a_long_detail_is_logged_cut_short_and_only_at_debug(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed update whose EntityAddress holds 60,000 characters: the schema's complaint
    quotes it, and the peer is told in full; the log keeps a kilobyte of it, at debug."""
    address = "ea1.2024-01.nl.example:" + "x" * 60_000
    status, text = await h.post(h.seal(h.inner().replace(CP.encode(), address.encode())))
    assert status == 400 and address in text
    lines = logged(caplog)
    assert max(len(line) for line in lines) < 2_000
    assert any("more characters)" in line for line in lines)
    assert not any("xxxxxxxx" in line for line in logged(caplog, above_debug=True))


async def test_identifiers_are_logged_only_at_debug(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """An invalid EntityAddress (refused 400), then a valid update (accepted): neither the
    addresses nor the MessageID and ConversationID appear above debug level."""
    invalid = "ean.4242424242"  # too short for an EAN
    status, _ = await h.post(h.seal(h.inner().replace(EANS[0].encode(), invalid.encode())))
    assert status == 400
    message = h.update()
    assert (await h.post(h.seal(message)))[0] == 200
    await h.response_to(message.message_id)
    identifiers = [invalid, CP, *EANS, message.message_id, message.conversation_id]
    above_debug = logged(caplog, above_debug=True)
    assert any("inbound DSOPortfolioUpdate from" in line for line in above_debug)
    assert [(i, line) for i in identifiers for line in above_debug if i in line] == []
    debug = "\n".join(logged(caplog))
    assert invalid in debug and message.message_id in debug  # there to debug with


async def test_no_response_names_the_versions_of_its_software(h: Harness) -> None:
    async with aiohttp.ClientSession() as session:
        for method, url in [
            ("GET", f"http://127.0.0.1:{h.port}/health"),
            ("GET", f"http://127.0.0.1:{h.port}/nothing-here"),
            ("POST", h.cro.url()),
        ]:
            async with session.request(method, url, data=b"<x/>") as response:
                assert response.headers.getall("Server") == ["uftp-adapter"], url
    # aiohttp's own answer to a request it cannot parse
    response = await h.raw(b"NOT HTTP AT ALL\r\n\r\n")
    assert response.status == 400
    servers = re.findall(rb"(?im)^server: *(.*?)\r$", response.head)
    assert servers == [b"uftp-adapter"], response.head
