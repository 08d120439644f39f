"""Coverage-guided fuzz target for the inbound decision of the core, as `adapter.server`
drives it (`adapter.uftp.inbound`):

    bytes -> check_transport -> read_envelope -> open_message (verify, then codec.decode)
          -> rejections
          (-> for a request: the Rejected answer of `answers`, written with `codec.encode`)

Run it (libFuzzer flags; the first directory receives new inputs, later ones only seed)::

    .venv/bin/python fuzz/fuzz_inbound.py /tmp/fuzz-work fuzz/corpus -max_total_time=60

The first byte of an input chooses how the rest is used:

- even: **envelope mode**. The rest is the request body as a peer would POST it. The seeds
  in this mode are SignedMessages sealed with `FUZZ_SIGNING` (see `make_corpus.py`), so a
  mutation that keeps the signature intact reaches `codec.decode`.
- odd: **inner mode**. The rest is the inner XML. The target signs it with `FUZZ_SIGNING`
  and wraps it itself, so `codec.decode` sees arbitrary bytes despite the signature.

A finding is any exception that is not an `adapter.uftp.errors.UftpError`: the server would
answer it with HTTP 500, which a peer must never be able to cause.
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from nacl.bindings import crypto_sign_seed_keypair

#: One fixed key pair, so that seeds sealed by `make_corpus.py` verify here.
FUZZ_PUBLIC, FUZZ_SIGNING = crypto_sign_seed_keypair(b"uftp-adapter fuzz key, not real!")
#: The receiving participant the target plays: the CRO of the samples.
OWN_DOMAIN = "cro.example.com"
#: The Versions the target speaks; the first is the one it answers in when the request's is
#: not one of them.
SUPPORTED_VERSIONS = ("3.1.0", "3.0.0")
#: Sender identities the inner mode signs as (chosen by the second byte).
SENDERS = (
    ("dso.example-grid.nl", "DSO"),
    ("agr.example.com", "AGR"),
    ("cro.example.com", "CRO"),
)

#: The body cap the target's endpoint has (the participant's default).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: The receiver's clock; no TimeStamp window is set, so it only has to be a time.
NOW = datetime(2026, 1, 1, tzinfo=UTC)

ENVELOPE_MODE = b"\x00"
INNER_MODE = b"\x01"

#: An attribute and its value (group 2) in the inner XML of a seed.
_ATTRIBUTE = re.compile(rb'([A-Za-z][\w-]*)="([^"]*)"')
#: Values the structure-aware mutator puts into an attribute: edges of the XSD types that
#: the readers in `codec` must survive once the schema has let them through.
INTERESTING_VALUES: tuple[bytes, ...] = (
    b"",
    b" ",
    b"0001-01-01T00:00:00+14:00",
    b"9999-12-31T23:59:59-14:00",
    b"2024-05-01T24:00:00Z",
    b"2024-05-01T23:59:60Z",
    b"2024-05-01T10:00:00",
    b"2024-05-01T10:00:00.123456789012Z",
    b"-2024-05-01T10:00:00Z",
    b"12024-05-01T10:00:00Z",
    b"2024-02-30",
    b"2024-05-01Z",
    b"2024-05-01+14:00",
    b"10000-01-01",
    b"-0001-01-01",
    b"0001-01-01",
    b"9999-12-31",
    b" true ",
    b"1",
    b"0",
    b" DSO",
    b"AGR",
    b"Accepted",
    b"Rejected",
    b"3.0.0",
    b"3.1.0",
    b"4.0.0",
    b"99999999999999999999.0.0",
    "\u0663.\u0661.\u0660".encode(),
    b"3F2504E0-4F89-11D3-9A0C-0305E82C3301",
    b"ean.123456789012",
    b"ean." + b"9" * 34,
    b"ea1.2024-01.x:y",
    b"ea1.2024-01." + b"a" * 244 + b":" + b"b" * 244,
    "ea1.2024-01.\u00e9:\U0001f600".encode(),
    b"Europe/Amsterdam",
    b"Pacific/___",
    b"dso.example-grid.nl",
    b"cro.example.com",
    b"&amp;&lt;&#9;&#10;",
    b"&#0;",
    b"&#xD800;",
    b"&e;",
    # ISP-Duration (xs:duration), powers and ISP numbers (xs:integer), amounts (xs:decimal).
    b"PT15M",
    b"PT900S",
    b"-PT15M",
    b"P1M",
    b"P1Y2M",
    b"PT0.0000001S",
    b"P" + b"9" * 20 + b"D",
    b"PT" + b"9" * 30 + b"S",
    b"9" * 5000,
    b"-" + b"9" * 40,
    b"+007",
    b"0",
    b"-1",
    b".5",
    b"5.",
    b"0.001",
    b"1.00",
    b"9" * 400 + b".5",
    b"Requested",
    b"Disputed",
    b"kWh",
    b"ImportMeterReading",
    b"E8716859000000001",
)


def _load_pipeline() -> dict[str, Any]:
    """Import the pipeline modules (inside `atheris.instrument_imports` when fuzzing)."""
    from adapter.uftp import answers, codec, envelope, inbound
    from adapter.uftp.errors import Reason, UftpError
    from adapter.uftp.messages import PayloadResponse, Role

    return {
        "codec": codec,
        "envelope": envelope,
        "inbound": inbound,
        "answers": answers,
        "Reason": Reason,
        "UftpError": UftpError,
        "PayloadResponse": PayloadResponse,
        "Role": Role,
    }


def make_target(
    pipeline: dict[str, Any], stages: Counter[str] | None = None
) -> Callable[[bytes], None]:
    """The one-input function: returns normally, or raises what would be an HTTP 500.

    `stages`, if given, counts the inputs that got through each stage ("decoded": the
    signature verified, the message schema-valid and read; "answered": the Rejected answer
    written), to show how deep a set of inputs reaches."""
    reached: Counter[str] = stages if stages is not None else Counter()
    codec = pipeline["codec"]
    envelope = pipeline["envelope"]
    inbound = pipeline["inbound"]
    uftp_error: type[Exception] = pipeline["UftpError"]
    role_type = pipeline["Role"]
    answers = pipeline["answers"]
    reason_type = pipeline["Reason"]
    payload_response: type = pipeline["PayloadResponse"]
    receiver = inbound.Receiver(OWN_DOMAIN, role_type.CRO, SUPPORTED_VERSIONS)
    sender_keys = SimpleNamespace(signing_keys=(FUZZ_PUBLIC,), barred=False)

    def test_one_input(data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0], data[1:]
        if mode & 1:
            domain, role = SENDERS[(rest[0] if rest else 0) % len(SENDERS)]
            body = envelope.seal(rest[1:], FUZZ_SIGNING, domain, role_type(role))
        else:
            body = rest
        head = inbound.RequestHead(len(body), "text/xml", "utf-8")
        try:
            inbound.check_transport(head, max_body_bytes=MAX_BODY_BYTES)
            signed = inbound.read_envelope(body)
            opened = inbound.open_message(signed, sender_keys)
            message = opened.message
            reached["decoded"] += 1
            reasons = inbound.rejections(opened, receiver, now=NOW)
        except uftp_error:
            return
        # Past this point the sender has had its HTTP 200; what the participant does next
        # must not fail either (any exception here, UftpError included, is a finding): store
        # the reasons, and write the Rejected answer every request is owed.
        assert all(isinstance(reason, str) for reason in reasons)
        assert message.time_stamp is not None and message.conversation_id
        "; ".join(reasons).encode("utf-8")
        if not isinstance(message, payload_response):
            answer = answers.answer(
                message,
                answers.rejected(message, reasons or [reason_type.INVALID_MESSAGE]),
                sender_domain=OWN_DOMAIN,
                recipient_domain=signed.sender_domain,
                versions=SUPPORTED_VERSIONS,
                time_stamp=message.time_stamp,
                message_id=message.message_id,
            )
            codec.encode(answer, validate=False)
            reached["answered"] += 1

    return test_one_input


def make_mutator(mutate: Callable[[bytes, int], bytes]) -> Callable[[bytes, int, int], bytes]:
    """libFuzzer's byte mutations (`mutate`), and half of the time for an inner-mode input
    a structure-aware one: one attribute value of the inner XML replaced by an interesting
    value or by a byte mutation of itself, so that schema-valid oddities reach the readers."""

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if len(data) > 2 and data[0] & 1 and rng.random() < 0.5:
            inner = data[2:]
            spans = [match.span(2) for match in _ATTRIBUTE.finditer(inner)]
            if spans:
                start, end = rng.choice(spans)
                if rng.random() < 0.6:
                    value = rng.choice(INTERESTING_VALUES)
                else:
                    value = mutate(inner[start:end], max(16, 2 * (end - start)))
                return (data[:2] + inner[:start] + value + inner[end:])[:max_size]
        return mutate(data, max_size)

    return mutator


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["adapter"]):
        pipeline = _load_pipeline()
    # Looked up per call: `atheris.Mutate` is only bound to libFuzzer once Fuzz() runs.
    mutator = make_mutator(lambda data, max_size: atheris.Mutate(data, max_size))
    atheris.Setup(argv, make_target(pipeline), custom_mutator=mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
