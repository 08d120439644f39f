"""What a SignedMessage may cost its reader: the wrapper is one element with three attributes
and no content (signed-message.md), so a document that holds more is refused before it is
parsed into anything, in about the time it takes to look at it - whatever it holds, up to the
participant's 32 MiB body cap.

The Body's value is read from the raw bytes; these tests also pin that what is read there is
what an XML parser reads, in every way a well-formed wrapper can be written.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest
from nacl.bindings import crypto_sign, crypto_sign_keypair

from adapter.uftp import codec
from adapter.uftp.envelope import MAX_BESIDES_BODY, open_sealed, parse_envelope
from adapter.uftp.errors import InvalidSignature, InvalidXml

from . import samples

MiB = 1024 * 1024
#: The participant's default body cap; every document here stays under it.
CAP = 32 * MiB
#: Process CPU time a refusal may take, whatever the document (measured: about 1 ms; the old
#: reader took 2-4 s for 20,000 attributes and 25 s for 60,000).
REFUSED_WITHIN_S = 0.1

HEAD = f'<SignedMessage SenderDomain="{samples.DSO_DOMAIN}" SenderRole="DSO" Body="AAAA"'


def attributes(count: int, name: str = "a") -> bytes:
    return b" ".join(b'%s%d="x"' % (name.encode(), i) for i in range(count))


def filling(unit: bytes, *, head: bytes = b"", tail: bytes = b"") -> bytes:
    """`head`, then `unit` repeated up to 28 MiB, then `tail`."""
    return head + unit * ((28 * MiB) // len(unit)) + tail


BOMBS: dict[str, Callable[[], bytes]] = {
    # The child-element bomb of the issue: 7,340,032 empty children, 28 MiB.
    "child-elements": lambda: HEAD.encode() + b">" + b"<a/>" * 7_340_032 + b"</SignedMessage>",
    "20000-attributes": lambda: HEAD.encode() + b" " + attributes(20_000) + b"/>",
    "60000-attributes": lambda: HEAD.encode() + b" " + attributes(60_000) + b"/>",
    "attributes-up-to-the-cap": lambda: HEAD.encode() + b" " + attributes(2_400_000) + b"/>",
    "attributes-before-the-body": lambda: (
        b"<SignedMessage " + attributes(2_000_000) + b' SenderDomain="d.test" SenderRole="DSO"'
        b' Body="AAAA"/>'
    ),
    "namespace-declarations": lambda: (
        HEAD.encode() + b" " + attributes(1_000_000, "xmlns:p") + b"/>"
    ),
    "xsi-attributes": lambda: (
        b'<SignedMessage xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        + attributes(20_000, "xsi:a")
        + b' SenderDomain="d.test" SenderRole="DSO" Body="AAAA"/>'
    ),
    "white-space-content": lambda: filling(
        b" \n", head=HEAD.encode() + b">", tail=b"</SignedMessage>"
    ),
    "text-content": lambda: filling(b"A", head=HEAD.encode() + b">", tail=b"</SignedMessage>"),
    "cdata-content": lambda: filling(
        b"A", head=HEAD.encode() + b"><![CDATA[", tail=b"]]></SignedMessage>"
    ),
    "comment-content": lambda: filling(
        b"-", head=HEAD.encode() + b"><!-- ", tail=b" --></SignedMessage>"
    ),
    "comments-before": lambda: filling(b"<!---->", tail=HEAD.encode() + b"/>"),
    "one-comment-before": lambda: filling(b"x", head=b"<!--", tail=b"-->" + HEAD.encode() + b"/>"),
    "comments-after": lambda: filling(b"<!---->", head=HEAD.encode() + b"/>"),
    "processing-instructions-after": lambda: filling(b"<?p?>", head=HEAD.encode() + b"/>"),
    "long-sender-domain": lambda: filling(
        b"a", head=b'<SignedMessage SenderDomain="', tail=b'.test" SenderRole="DSO" Body="AAAA"/>'
    ),
    "unclosed-start-tag": lambda: filling(b"a", head=HEAD.encode() + b" "),
}


@pytest.mark.parametrize("build", BOMBS.values(), ids=BOMBS.keys())
def test_a_document_that_holds_more_than_a_wrapper_is_refused_at_once(
    build: Callable[[], bytes],
) -> None:
    data = build()
    assert len(data) < CAP
    started = time.process_time()
    with pytest.raises(InvalidXml) as caught:
        parse_envelope(data)
    spent = time.process_time() - started
    assert spent < REFUSED_WITHIN_S, f"{spent:.3f} s of CPU to refuse {len(data)} bytes"
    assert caught.value.status == 400
    assert len(str(caught.value)) < 500


def test_the_refusal_names_the_size_and_the_first_unexpected_attribute() -> None:
    with pytest.raises(InvalidXml, match=f"more than {MAX_BESIDES_BODY}"):
        parse_envelope(BOMBS["child-elements"]())
    with pytest.raises(InvalidXml, match=r"no attribute a0 \(nor 99 more\)"):
        parse_envelope(HEAD.encode() + b" " + attributes(100) + b"/>")


# ============================================================================================
# What is read from the bytes is what the parser reads
# ============================================================================================

KEYPAIR = crypto_sign_keypair()
INNER = codec.encode(samples.make_test_message())
SEALED = crypto_sign(INNER, KEYPAIR[1])
BODY = base64.b64encode(SEALED).decode("ascii")
#: A second, different sealed message: what a misreading would pick up instead.
DECOY = base64.b64encode(crypto_sign(INNER + b" ", KEYPAIR[1])).decode("ascii")
ATTRIBUTES = f'SenderDomain="{samples.DSO_DOMAIN}" SenderRole="DSO"'
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'

WELL_FORMED = {
    "body-last": f'<SignedMessage {ATTRIBUTES} Body="{BODY}"/>',
    "body-first": f"<SignedMessage Body='{BODY}' {ATTRIBUTES}/>",
    "spaces-everywhere": (
        f"<SignedMessage\n\tBody \t=\r\n '{BODY}'\n {ATTRIBUTES}   \n></SignedMessage  >\n"
    ),
    "byte-order-mark": f'\ufeff<?xml version="1.0"?><SignedMessage {ATTRIBUTES} Body="{BODY}"/>',
    "prolog-of-comments-and-instructions": (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- a > b, <c> -->\n<?p a="?" ?>'
        f'<!-- <SignedMessage Body="{DECOY}"/> --><SignedMessage {ATTRIBUTES} Body="{BODY}"/>'
    ),
    "body-spelled-in-another-value": (
        f"<SignedMessage {XSI} xsi:noNamespaceSchemaLocation='urn:x Body=\"{DECOY}\"'"
        f' {ATTRIBUTES} Body="{BODY}"/>'
    ),
    "xsi-attributes": (
        f'<SignedMessage {XSI} xsi:schemaLocation="urn:a b" {ATTRIBUTES} Body="{BODY}"/>'
    ),
    "comment-inside-and-after": (
        f'<SignedMessage {ATTRIBUTES} Body="{BODY}"><!-- Body="{DECOY}" --></SignedMessage>'
        f"<!-- {DECOY} -->\n"
    ),
    "line-wrapped-with-references": (
        f'<SignedMessage {ATTRIBUTES} Body="'
        + "&#x0A;\t&#13;".join(BODY[i : i + 64] for i in range(0, len(BODY), 64))
        + '"/>'
    ),
}


@pytest.mark.parametrize("document", WELL_FORMED.values(), ids=WELL_FORMED.keys())
def test_the_body_is_read_as_an_xml_parser_reads_it(document: str) -> None:
    signed = parse_envelope(document.encode())
    assert signed.sealed == SEALED
    assert open_sealed(signed.sealed, [KEYPAIR[0]]) == INNER


@pytest.mark.parametrize(
    "document",
    [
        f'<SignedMessage {ATTRIBUTES} Body="{BODY}" Body="{BODY}"/>',
        f"<SignedMessage {ATTRIBUTES} Body=\"{BODY}'/>",
        f'<SignedMessage {ATTRIBUTES} Body="{BODY}"',
        f'<SignedMessage {ATTRIBUTES} Body="{BODY[:8]}&#65;{BODY[9:]}"/>',
        f'<SignedMessage {ATTRIBUTES} Body="{BODY}"><a/></SignedMessage>',
        f'<!-- unclosed <SignedMessage {ATTRIBUTES} Body="{BODY}"/>',
    ],
    ids=[
        "body-twice",
        "quotes-do-not-match",
        "no-end-of-tag",
        "reference-to-a-base64-character",
        "child-after-the-body",
        "unclosed-comment-before",
    ],
)
def test_a_wrapper_that_is_not_well_formed_or_not_base64_is_refused(document: str) -> None:
    with pytest.raises(InvalidXml):
        parse_envelope(document.encode())


def test_a_large_body_is_read_from_where_it_lies() -> None:
    # 21 MiB sealed, 28 MiB of base64: decoded, not refused by the size rule.
    sealed = bytes(64) + b"x" * (21 * MiB)
    document = (
        f'<SignedMessage {ATTRIBUTES} Body="{base64.b64encode(sealed).decode()}"/>'
    ).encode()
    assert len(document) < CAP
    assert parse_envelope(document).sealed == sealed


def test_an_empty_body_is_schema_valid_but_cannot_be_opened() -> None:
    with pytest.raises(InvalidSignature):
        parse_envelope(f'<SignedMessage {ATTRIBUTES} Body=""/>'.encode())
