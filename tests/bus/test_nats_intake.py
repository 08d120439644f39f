"""The NATS protocol as `ProtocolReader` reads it: operation for operation what nats-py's own
parser reads from the same bytes, however they are cut into reads; and what is not the
protocol refused. (The reader on a live connection, `SocketIntake`, is tested against a real
nats-server in test_nats.py.)"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from adapter.bus.nats_intake import MAX_CONTROL_LINE, ProtocolReader

#: A subject or reply subject: printable ASCII without white space.
tokens = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=24)
payloads = st.binary(max_size=300) | st.sampled_from([b"", b"\r\n", b"MSG a 1 2\r\nxx\r\n"])
header_blocks = st.builds(
    lambda lines: b"NATS/1.0\r\n" + b"".join(lines) + b"\r\n",
    st.lists(st.binary(max_size=40).map(lambda text: text.replace(b"\n", b"") + b"\r\n")),
)
sids = st.integers(min_value=0, max_value=2**40)
replies = st.none() | tokens
error_texts = st.text(
    st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="'"), min_size=1
)


@st.composite
def operations(draw: st.DrawFn) -> tuple[bytes, tuple[Any, ...]]:
    """One operation as the server writes it, and the call it must become."""
    kind = draw(st.sampled_from(["MSG", "HMSG", "PING", "PONG", "+OK", "-ERR", "INFO"]))
    if kind in ("MSG", "HMSG"):
        subject, sid, reply, payload = draw(tokens), draw(sids), draw(replies), draw(payloads)
        space = draw(st.sampled_from([b" ", b"  ", b"\t"]))
        args = [subject.encode(), str(sid).encode()] + ([reply.encode()] if reply else [])
        # (an HMSG with no header bytes: never sent, read as nats-py reads it all the same)
        headers = draw(header_blocks | st.just(b"")) if kind == "HMSG" else None
        if headers is None:
            args.append(str(len(payload)).encode())
        else:
            args += [str(len(headers)).encode(), str(len(headers) + len(payload)).encode()]
        line = space.join([kind.encode(), *args]) + b"\r\n"
        body = (headers or b"") + payload + b"\r\n"
        headers = headers or None
        reply_bytes = reply.encode() if reply else b""
        return line + body, ("msg", sid, subject.encode(), reply_bytes, payload, headers)
    if kind == "-ERR":
        text = draw(error_texts)
        return f"-ERR '{text}'\r\n".encode(), ("-ERR", f"'{text}'".lower())
    if kind == "INFO":
        info = {"server_id": draw(tokens), "max_payload": draw(st.integers(0, 2**26))}
        return b"INFO " + json.dumps(info).encode() + b"\r\n", ("INFO", info)
    return kind.encode() + b"\r\n", (kind,)


class NatsPyCalls:
    """What nats-py's parser calls on its client, recorded as `ProtocolReader`'s calls are."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), data, headers))

    async def _process_ping(self) -> None:
        self.calls.append(("PING",))

    async def _process_pong(self) -> None:
        self.calls.append(("PONG",))

    async def _process_err(self, text: str) -> None:
        self.calls.append(("-ERR", text))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("INFO", info))


def read(chunks: list[bytes], **options: Any) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    reader = ProtocolReader(
        lambda *message: calls.append(("msg", *message)),
        lambda op, argument: calls.append((op,) if argument is None else (op, argument)),
        **options,
    )
    for chunk in chunks:
        reader.feed(chunk)
    return calls


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(stream), *(point % (len(stream) + 1) for point in points)})
    return [stream[start:end] for start, end in itertools.pairwise(edges)]


@settings(max_examples=300, deadline=None)
@given(st.lists(operations(), max_size=12), st.lists(st.integers(min_value=0), max_size=20))
def test_every_operation_is_read_as_nats_pys_parser_reads_it(
    written: list[tuple[bytes, tuple[Any, ...]]], points: list[int]
) -> None:
    stream = b"".join(wire for wire, _ in written)
    chunks = cut(stream, points)
    ours = [call for call in read(chunks) if call != ("+OK",)]  # nats-py does nothing with it
    theirs = NatsPyCalls()
    parser = Parser(theirs)

    async def parse() -> None:
        for chunk in chunks:
            await parser.parse(chunk)

    asyncio.run(parse())
    assert ours == theirs.calls
    assert [call for call in read(chunks)] == [expected for _, expected in written]


def test_a_message_is_read_only_once_all_of_it_and_its_crlf_came() -> None:
    calls: list[tuple[Any, ...]] = []
    reader = ProtocolReader(lambda *message: calls.append(message), lambda *_: None)
    for byte in b"HMSG s 7 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n":
        assert not calls
        reader.feed(bytes([byte]))
    assert calls == [(7, b"s", b"r", b"hi", b"NATS/1.0\r\n\r\n")]


def test_a_large_message_in_many_pieces_is_read_whole() -> None:
    payload = bytes(range(256)) * 16 * 1024  # 4 MiB
    stream = b"MSG big 1 %d\r\n" % len(payload) + payload + b"\r\nPING\r\n"
    calls = read([stream[at : at + 4096] for at in range(0, len(stream), 4096)])
    assert calls == [("msg", 1, b"big", b"", payload, None), ("PING",)]


@pytest.mark.parametrize(
    "wire",
    [
        b"NOPE\r\n",
        b"MSG subject\r\n",
        b"MSG subject 1 2 3 4\r\n",
        b"MSG subject one 2\r\nxx\r\n",  # the sid is no number
        b"MSG subject 1 -2\r\n",
        b"MSG subject 1 1_0\r\n",  # int() would take it
        b"HMSG subject 1 9\r\n",
        b"HMSG subject 1 x 9\r\n",
        b"HMSG subject 1 12 4\r\nNATS/1.0\r\n\r\n\r\n",  # header block larger than the message
        b"MSG subject 1 2\r\nxxx\r\n",  # no CRLF where the payload ends
        b"INFO {not json\r\n",
        b"INFO [1]\r\n",
        b"PING now\r\n",
    ],
)
def test_what_is_not_the_protocol_is_refused(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        read([wire])


def test_a_control_line_without_end_is_not_waited_for_past_its_bound() -> None:
    read([b"INFO " + b"x" * (MAX_CONTROL_LINE - 10)])  # may still end
    with pytest.raises(ProtocolError):
        read([b"INFO " + b"x" * MAX_CONTROL_LINE, b"y" * 10])
    with pytest.raises(ProtocolError):  # nor taken when its end is there
        read([b"INFO " + b"x" * MAX_CONTROL_LINE + b"\r\n"])


def test_a_message_larger_than_the_bound_is_not_waited_for() -> None:
    read([b"MSG s 1 1000\r\n"], max_message=1000)
    with pytest.raises(ProtocolError):
        read([b"MSG s 1 1001\r\n"], max_message=1000)
