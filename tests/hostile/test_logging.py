"""What the endpoint writes about what a peer sends: against a running CRO, with the logs of
the whole process captured at debug level.

What a peer controls is escaped in every log line, so that it never starts a line of its own;
a refusal's reason is logged at info level, cut short, and its detail - which may quote the
peer's values, a 64 KB one as well as an EntityAddress - only at debug level; identifiers
(MessageIDs, ConversationIDs, EntityAddresses: personal data in this domain) only at debug
level (privacy-and-security-by-design.md). And no response says which versions of Python and
aiohttp answer it.

A refusal is logged at warning level when the envelope names one of our configured peers,
with its reason - a wrong key on either side may be all that its operator would otherwise see
as "no response" - and at info level when it names a stranger, the internet's noise.
"""

from __future__ import annotations

import logging
import re

import aiohttp
import pytest

from adapter.directory import StaticDirectory
from adapter.keys import generate
from adapter.testing import Network, eventually
from adapter.uftp.messages import Role

from .harness import CP, CRO, DSO, EANS, Harness, start

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
    assert any("inbound refused from 127.0.0.1: HTTP 400 InvalidXml" in line for line in lines)


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


def refusals(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "adapter.server"
        and r.levelno > logging.DEBUG
        and r.getMessage().startswith("inbound refused")
    ]


async def test_a_response_under_a_key_we_do_not_know_is_a_warning_with_the_reason(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The DSO has a wrong key for the CRO: the CRO's response gets the DSO's 401, and the
    DSO's log says so at warning level, with the reason and the peer, not only "no
    response within N s"."""
    directory = h.dso.directory
    assert isinstance(directory, StaticDirectory)
    cro = h.network.peer(h.cro, signing_keys=(generate().public.signing,))
    directory.add(cro)
    await h.dso.send(h.update(), to=CRO)
    expected = (
        f"inbound refused from peer {CRO} (CRO, 127.0.0.1): HTTP 401 InvalidSignature: "
        "the signature verifies with none of the sender's 1 key(s)"
    )
    await eventually(lambda: (logging.WARNING, expected) in refusals(caplog))


async def test_a_peers_message_that_breaks_the_schema_is_a_warning_without_its_values(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    invalid = "ean.4242424242"
    status, _ = await h.post(h.seal(h.inner().replace(EANS[0].encode(), invalid.encode())))
    assert status == 400
    [(level, line)] = refusals(caplog)
    assert level == logging.WARNING
    assert line.startswith(f"inbound refused from peer {DSO} (DSO, 127.0.0.1): HTTP 400")
    assert "Element 'Connection', attribute 'EntityAddress'" in line and invalid not in line


async def test_a_stranger_is_refused_at_info_level(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = "dso9.example.org"
    message = h.update(sender_domain=stranger)
    status, _ = await h.post(h.seal(message, domain=stranger, secret=generate().signing))
    assert status == 401
    # and a configured domain in a role it is not configured in: a peer nonetheless
    status, _ = await h.post(h.seal(h.update(), role=Role.AGR))
    assert status == 401
    assert [level for level, _ in refusals(caplog)] == [logging.INFO, logging.WARNING]
    assert refusals(caplog)[0][1].startswith(f"inbound refused from unknown sender {stranger}")
