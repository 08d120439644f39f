"""What one request may cost the endpoint in memory: no request under the body cap that is
refused before its signature verifies raises the resident set by more than three times its
own size, whatever it holds (a 28 MiB child-element bomb used to cost 924 MB). Past the
signature the message is its sender's own: a large valid portfolio update is a tree many times
its size, bounded by the body cap and the bytes of bodies in flight.

The endpoint runs alone in a child process (tests/hostile/lone_endpoint.py), so that its
peak resident set (VmHWM, reset through /proc/PID/clear_refs before each request) measures
that one request and nothing of this process.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .lone_endpoint import DSO

MiB = 1024 * 1024
#: Growth of the peak resident set allowed for a request, as a multiple of its size.
MAX_GROWTH = 3.0
ROOT = Path(__file__).resolve().parents[2]


class LoneEndpoint:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def _status(self, key: str) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {key} in /proc/{self.process.pid}/status")

    def reset_peak(self) -> None:
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current resident set

    def post(self, body: bytes, extra: str = "") -> tuple[int, int]:
        """POST `body`; (the HTTP status, the growth of the peak resident set meanwhile)."""
        self.reset_peak()
        before = self._status("VmRSS")
        head = (
            f"POST /shapeshifter/api/v3/message HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: text/xml; charset=utf-8\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.sendall(head)
            with contextlib.suppress(ConnectionError):  # answered before it was all sent
                connection.sendall(body)
            answer = connection.recv(4096)
        status = int(answer.split(b" ", 2)[1])
        return status, self._status("VmHWM") - before


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[LoneEndpoint]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile.lone_endpoint", str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lone = LoneEndpoint(process, int(process.stdout.readline()))
        try:
            lone.reset_peak()
        except OSError as exc:
            pytest.skip(f"the peak resident set of a child cannot be reset here: {exc}")
        lone.post(b"<warm-up/>")
        yield lone
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def wrapper(body: bytes, domain: str = DSO) -> bytes:
    return b'<SignedMessage SenderDomain="%s" SenderRole="DSO" Body="%s"/>' % (
        domain.encode(),
        body,
    )


def wrapped(text: bytes) -> bytes:
    """`text` in lines of 76 characters, as MIME-style encoders write base64."""
    return b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


REQUESTS: dict[str, tuple[int, Callable[[], bytes]]] = {
    # The bomb of the issue: 7,340,032 empty children, 28 MiB (it cost 924 MB).
    "child-elements->400": (
        400,
        lambda: (
            b'<SignedMessage SenderDomain="d.test" SenderRole="DSO" Body="AAAA">'
            + b"<a/>" * 7_340_032
            + b"</SignedMessage>"
        ),
    ),
    "attributes->400": (
        400,
        lambda: b"<SignedMessage " + b" ".join(b'a%d=""' % i for i in range(2_500_000)) + b"/>",
    ),
    "21-MiB-body-from-a-stranger->401": (
        401,
        lambda: wrapper(base64.b64encode(os.urandom(21 * MiB)), "dso9.example.org"),
    ),
    "21-MiB-body-line-wrapped->401": (
        401,
        lambda: wrapper(wrapped(base64.b64encode(os.urandom(20 * MiB)))),
    ),
}


@pytest.mark.parametrize(("status", "build"), REQUESTS.values(), ids=REQUESTS.keys())
def test_a_request_costs_at_most_three_times_its_size(
    endpoint: LoneEndpoint, status: int, build: Callable[[], bytes]
) -> None:
    body = build()
    answer, growth = endpoint.post(body)
    print(f"{len(body) / MiB:.1f} MiB: HTTP {answer}, peak RSS +{growth / MiB:.1f} MiB")
    assert answer == status
    assert growth <= MAX_GROWTH * len(body), f"+{growth / len(body):.1f} times its size"
