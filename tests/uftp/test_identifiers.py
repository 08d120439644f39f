"""New identifiers: MessageIDs valid UUIDs for any receiver, unique, and in order of creation
(what keeps the store's MessageID indexes writing their last page); the other ids what
`str(uuid.uuid4())` gives, made without a `uuid.UUID`."""

from __future__ import annotations

import re
import time
import uuid

from adapter.uftp.identifiers import new_id, new_message_id

#: UFTP-common.xsd's UUIDType, anchored as XSD patterns are.
UUID_TYPE = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z"
)


def test_a_message_id_is_a_canonical_version_7_uuid_the_schema_accepts() -> None:
    made = new_message_id()
    assert UUID_TYPE.match(made)
    parsed = uuid.UUID(made)
    assert str(parsed) == made  # canonical: lower case, as str(uuid.UUID) writes it
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_message_ids_carry_their_millisecond_and_sort_by_it() -> None:
    made = []
    for _ in range(5):
        before = time.time_ns() // 1_000_000
        made.append(new_message_id())
        after = time.time_ns() // 1_000_000
        assert before <= uuid.UUID(made[-1]).int >> 80 <= after
        time.sleep(0.002)  # the next one in a later millisecond
    assert sorted(made) == made


def test_message_ids_of_one_millisecond_still_differ() -> None:
    made = [new_message_id() for _ in range(20_000)]
    assert len(set(made)) == len(made)


def test_new_ids_are_random_version_4_uuids_in_canonical_form() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lower case, hyphens where uuid4's are
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
