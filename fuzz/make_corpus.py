"""Write the seed corpus of `fuzz_inbound.py` into `fuzz/corpus/` (run from the repository
root: `.venv/bin/python fuzz/make_corpus.py`).

Seeds: every message type of `tests.uftp.samples` in every Version the codec speaks, in
inner mode (the target signs them), plus each type in 3.1.0 as a complete SignedMessage sealed
with the fuzz key (envelope mode), plus a few hostile shapes the mutator can start from.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fuzz"))

from fuzz_inbound import ENVELOPE_MODE, FUZZ_SIGNING, INNER_MODE, SENDERS  # noqa: E402

from adapter.uftp import codec, envelope  # noqa: E402
from adapter.uftp.messages import Role  # noqa: E402
from tests.uftp import samples  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"


def seeds() -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for version in samples.VERSIONS:
        for cls, message in samples.all_samples(version).items():
            inner = codec.encode(message)
            sender = next(i for i, (d, _) in enumerate(SENDERS) if d == message.sender_domain)
            found[f"inner-{cls.xml_name}-{version}"] = INNER_MODE + bytes([sender]) + inner
            if version == "3.1.0":
                role = Role(SENDERS[sender][1])
                sealed = envelope.seal(inner, FUZZ_SIGNING, message.sender_domain, role)
                found[f"envelope-{cls.xml_name}-{version}"] = ENVELOPE_MODE + sealed
    test = codec.encode(samples.make_test_message())
    found["inner-doctype"] = (
        INNER_MODE
        + b"\x00"
        + test.replace(b"<TestMessage", b'<!DOCTYPE TestMessage [<!ENTITY e "x">]><TestMessage', 1)
    )
    found["inner-utf16"] = INNER_MODE + b"\x00" + test.decode().encode("utf-16")
    found["envelope-not-base64"] = ENVELOPE_MODE + (
        b'<SignedMessage SenderDomain="dso.example-grid.nl" SenderRole="DSO" Body="!!!!"/>'
    )
    return found


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, data in seeds().items():
        (CORPUS / name).write_bytes(data)
    print(f"{len(seeds())} seeds in {CORPUS}")


if __name__ == "__main__":
    main()
