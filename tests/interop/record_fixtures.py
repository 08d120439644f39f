"""Record shapeshifter-uftp's XML of every message type it writes and we read, per Version, to
tests/interop/fixtures/ (one file per case: KEY-VERSION.xml):

    .venv/bin/python -m tests.interop.record_fixtures

The samples are `THEIRS_WE_READ` of test_shapeshifter_models (their dataclasses, fixed
metadata), written by their `transport.to_xml`. test_recorded_fixtures reads the files with
our codec where shapeshifter-uftp is not installed, and checks them against it where it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def cases() -> dict[str, bytes]:
    """File name -> their XML, for every (sample, Version) they write and we read."""
    from shapeshifter_uftp import transport

    from tests.interop.test_shapeshifter_models import THEIR_XML_CASES, THEIRS

    return {
        f"{key}-{version}.xml": transport.to_xml(
            dataclasses.replace(THEIRS[key], version=version)
        ).encode("utf-8")
        for key, version in THEIR_XML_CASES
    }


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for old in FIXTURES.glob("*.xml"):
        old.unlink()
    recorded = cases()
    for name, xml in recorded.items():
        (FIXTURES / name).write_bytes(xml)
    print(f"wrote {len(recorded)} fixtures to {FIXTURES}")


if __name__ == "__main__":
    main()
