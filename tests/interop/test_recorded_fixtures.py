"""The recorded XML of tests/interop/fixtures is what shapeshifter-uftp writes today, and our
reading of it is their dataclass's content (tests/uftp/test_codec_recorded.py reads the
files without them). A new version of theirs that writes otherwise fails here: record again
with `python -m tests.interop.record_fixtures` and look at the difference."""

from __future__ import annotations

import dataclasses

import pytest

transport = pytest.importorskip("shapeshifter_uftp.transport")

from adapter.interop.shapeshifter import from_shapeshifter  # noqa: E402
from adapter.uftp.codec import decode  # noqa: E402
from tests.interop.record_fixtures import FIXTURES, cases  # noqa: E402
from tests.interop.test_shapeshifter_models import THEIRS, assert_same  # noqa: E402

RECORDED = cases()


def test_every_case_is_recorded_and_nothing_else() -> None:
    assert sorted(path.name for path in FIXTURES.glob("*.xml")) == sorted(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_recording_is_what_they_write_and_what_we_read(name: str) -> None:
    recorded = (FIXTURES / name).read_bytes()
    assert recorded == RECORDED[name]
    key, _, version = name.removesuffix(".xml").rpartition("-")
    theirs = dataclasses.replace(THEIRS[key], version=version)
    assert_same(decode(recorded), from_shapeshifter(theirs))
