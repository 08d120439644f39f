"""Our codec reads what shapeshifter-uftp writes, from XML recorded from it
(tests/interop/fixtures, written by tests/interop/record_fixtures.py): every message type it
writes and we read, in each Version it writes it. These run without shapeshifter-uftp
installed; tests/interop/test_recorded_fixtures.py checks the recordings against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.uftp import codec
from adapter.uftp.messages import MESSAGE_TYPES, TestMessageResponse

FIXTURES = Path(__file__).parents[1] / "interop" / "fixtures"
RECORDED = sorted(FIXTURES.glob("*.xml"))


def test_every_type_is_recorded_in_every_version() -> None:
    """All but TestMessageResponse, whose 3.x form they write with a Result the schema does
    not allow (test_shapeshifter_services), and responses in the draft, which they do not
    write (their 2.4 knows only the 3.x references)."""
    read = {codec.decode(path.read_bytes()).xml_name for path in RECORDED}
    assert read == set(MESSAGE_TYPES) - {TestMessageResponse.xml_name}
    versions = {path.stem.rpartition("-")[2] for path in RECORDED}
    assert versions == {"3.0.0", "3.1.0", "4.0.0"}


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
def test_their_recorded_xml_is_read_by_us(path: Path) -> None:
    key, _, version = path.stem.rpartition("-")
    message = codec.decode(path.read_bytes())
    assert message.version == version
    assert key.startswith(message.xml_name)  # e.g. FlexOffer-unsolicited
    # What we read, we write back as a message of the same content.
    assert codec.decode(codec.encode(message)) == message
