"""New identifiers: what `str(uuid.uuid4())` gives, made without a `uuid.UUID`."""

from __future__ import annotations

import uuid

from adapter.uftp.identifiers import new_id


def test_new_ids_are_random_version_4_uuids_in_canonical_form() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lower case, hyphens where uuid4's are
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
