"""CloudEvents as the bridge writes them: attributes, the AMQP and NATS bindings in binary
mode, and the JSON form of UFTP messages, which must round-trip to the same typed message."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adapter.bus.events
from adapter.bus.events import (
    _ATTRIBUTE_NAME,
    _CORE,
    _ENCODED,
    EXTENSIONS,
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    CloudEvent,
    InvalidEvent,
    _encode_bytes,
    _encoded_values,
    _nothing_to_encode,
    from_amqp,
    from_nats,
    json_to_element,
    message_from_json,
    message_to_json,
    nats_header_lines,
    source_urn,
    split_nats,
    to_amqp,
    to_nats,
    xml_to_json,
)
from adapter.bus.journal import new_event_id
from adapter.store.base import OutboundRecord, OutboundStatus
from adapter.store.register import UpdateKind, UpdateMeta
from adapter.uftp import codec
from adapter.uftp.errors import InvalidXml
from adapter.uftp.messages import Role
from tests.bus.tools import cro_journal, dso_test_message
from tests.uftp.samples import all_samples, version_id

VERSIONS = ("3.0.0", "3.1.0", "4.0.0")


def event(**changes: object) -> CloudEvent:
    fields: dict[str, object] = {
        "id": "e-1",
        "source": source_urn("DSO", "dso.example.com"),
        "type": "uftp.DSOPortfolioUpdate",
        "time": datetime(2024, 5, 1, 10, 15, 30, 250000, tzinfo=timezone(timedelta(hours=2))),
        "datacontenttype": XML_CONTENT_TYPE,
        "data": b"<DSOPortfolioUpdate/>",
        "extensions": {"correlationid": "c-1", "uftpsender": "dso.example.com"},
    }
    fields.update(changes)
    return CloudEvent(**fields)  # type: ignore[arg-type]


def test_attributes_are_canonical_strings_with_the_time_in_utc() -> None:
    attributes = event().attributes()
    assert attributes == {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:uftp:DSO:dso.example.com",
        "type": "uftp.DSOPortfolioUpdate",
        "time": "2024-05-01T08:15:30.250000Z",
        "datacontenttype": "text/xml; charset=utf-8",
        "correlationid": "c-1",
        "uftpsender": "dso.example.com",
    }
    assert CloudEvent.from_attributes(attributes, b"<DSOPortfolioUpdate/>") == event()


def test_an_event_extended_has_the_attributes_it_would_have_been_made_with() -> None:
    # Whether its attributes were made before (the journal's event, stored, then named its
    # command by the store) or not: the same as an event made with the extension at once.
    made = event()
    made.attributes()
    for original in (made, event()):
        extended = original.extended("commandid", "cmd-1")
        wanted = event(extensions={**original.extensions, "commandid": "cmd-1"})
        assert extended == wanted
        assert extended.attributes() == wanted.attributes()
        assert to_amqp(extended) == to_amqp(wanted)
        assert "commandid" not in original.attributes()  # the original is as it was
    with pytest.raises(InvalidEvent):
        made.extended("Command_Id", "x")


def test_the_attributes_are_made_once_and_the_bindings_leave_them_as_they_are() -> None:
    sent = event()
    attributes = sent.attributes()
    assert sent.attributes() is attributes
    headers, content_type = to_amqp(sent)
    to_nats(sent)
    assert content_type == XML_CONTENT_TYPE and "cloudEvents_datacontenttype" not in headers
    assert sent.attributes() == event().attributes()  # datacontenttype still there


@pytest.mark.parametrize("name", ["Correlation", "correlation_id", "a" * 21, "id", "time"])
def test_extension_names_follow_the_cloudevents_naming_rule(name: str) -> None:
    with pytest.raises(InvalidEvent):
        event(extensions={name: "x"})


@pytest.mark.parametrize("name", sorted(EXTENSIONS))
def test_the_adapters_own_extension_names_follow_the_naming_rule(name: str) -> None:
    # They pass without the pattern (`CloudEvent.__post_init__`): each must be a name the
    # pattern accepts, and no core attribute.
    assert _ATTRIBUTE_NAME.fullmatch(name) and name not in _CORE
    assert event(extensions={name: "x"}).extensions == {name: "x"}


def test_event_ids_are_random_uuids_in_canonical_form() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_missing_required_attributes_are_named() -> None:
    with pytest.raises(InvalidEvent, match="source, specversion"):
        CloudEvent.from_attributes({"id": "1", "type": "t", "time": "2024-01-01T00:00:00Z"}, b"")


def test_amqp_binary_mode_puts_the_content_type_in_the_property_and_the_rest_in_headers() -> None:
    headers, content_type = to_amqp(event())
    assert content_type == XML_CONTENT_TYPE
    assert headers["cloudEvents_id"] == "e-1"
    assert headers["cloudEvents_specversion"] == "1.0"
    assert headers["cloudEvents_correlationid"] == "c-1"
    assert not any("datacontenttype" in key for key in headers)
    assert all(key.startswith("cloudEvents_") for key in headers)
    assert CloudEvent.from_attributes(from_amqp(headers, content_type), b"x") == event(data=b"x")


def test_amqp_reading_takes_both_separators_and_native_values() -> None:
    headers = {
        "cloudEvents:id": b"e-2",
        "cloudEvents_time": datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
        "cloudEvents_specversion": "1.0",
        "x-death": [{"count": 1}],  # a broker's header, not an attribute
    }
    assert from_amqp(headers, JSON_CONTENT_TYPE) == {
        "id": "e-2",
        "time": "2024-05-01T08:00:00.000000Z",
        "specversion": "1.0",
        "datacontenttype": JSON_CONTENT_TYPE,
    }


def test_nats_binary_mode_percent_encodes_as_the_binding_example() -> None:
    headers = to_nats(event(extensions={"uftpsender": "Euro \u20ac \U0001f600"}))
    # The example of the NATS protocol binding, section 3.1.3.2.
    assert headers["ce-uftpsender"] == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert headers["ce-datacontenttype"] == "text/xml;%20charset=utf-8"
    attributes = from_nats({key.upper(): value for key, value in headers.items()})
    assert attributes["uftpsender"] == "Euro \u20ac \U0001f600"
    assert attributes["datacontenttype"] == XML_CONTENT_TYPE


@pytest.mark.parametrize(
    ("content_type", "encoded"),
    [
        (XML_CONTENT_TYPE, "text/xml;%20charset=utf-8"),
        (JSON_CONTENT_TYPE, "application/json;%20charset=utf-8"),
    ],
)
def test_nats_binary_mode_encodes_the_content_type_beside_plain_values(
    content_type: str, encoded: str
) -> None:
    # Every other value needs no encoding: the way of nearly every event, where the content
    # type is taken as it was encoded once. Both forms of the headers say the same.
    sent = event(datacontenttype=content_type)
    headers = to_nats(sent)
    assert headers["ce-datacontenttype"] == encoded
    assert headers["ce-correlationid"] == "c-1"
    assert nats_header_lines(sent) == "".join(f"{k}: {v}\r\n" for k, v in headers.items())


#: What needed no percent-encoding before `_nothing_to_encode`, the answer it must give.
NOTHING_TO_ENCODE = re.compile(r"[!#-$&-~]*")
#: Whether `_encoded_values` took every value at once before: each one needing no encoding
#: or one of the content types encoded once.
ENCODED_AT_ONCE = re.compile(
    "|".join([NOTHING_TO_ENCODE.pattern, *(re.escape(text) for text in _ENCODED)])
)


def test_nothing_to_encode_answers_as_the_regular_expression_on_every_character() -> None:
    # Every code point, surrogates included: str.isprintable would take non-ASCII letters,
    # which is why isascii is asked first.
    wrong = [
        hex(code)
        for code in range(0x110000)
        if _nothing_to_encode(chr(code)) != bool(NOTHING_TO_ENCODE.fullmatch(chr(code)))
    ]
    assert wrong == []
    assert _nothing_to_encode("")


#: Strings near the ones that need no encoding: mostly plain characters, some of those that
#: are not (space, quote, percent, controls, DEL, non-ASCII, a surrogate).
NEAR_PLAIN = st.text(
    st.one_of(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E),
        st.sampled_from([" ", '"', "%", "\t", "\r", "\n", "\x00", "\x7f", "\x80", "\xa0"]),
        st.sampled_from(["\u00e9", "\u20ac", "\ud800", "\udfff", "\U0001f600", "\U0010ffff"]),
    ),
    max_size=40,
)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(NEAR_PLAIN, st.text(st.characters(exclude_categories=()), max_size=40)))
def test_nothing_to_encode_answers_as_the_regular_expression_on_any_string(text: str) -> None:
    assert _nothing_to_encode(text) == bool(NOTHING_TO_ENCODE.fullmatch(text))


#: Attribute values: near plain ones (no surrogate: the binding encodes UTF-8), empty ones,
#: the content types and strings that hold one without being it.
VALUES = st.lists(
    st.one_of(
        NEAR_PLAIN.filter(lambda text: not any(0xD800 <= ord(c) < 0xE000 for c in text)),
        st.just(""),
        st.sampled_from([XML_CONTENT_TYPE, JSON_CONTENT_TYPE]),
        st.sampled_from([XML_CONTENT_TYPE, JSON_CONTENT_TYPE]).map(lambda text: text + "x"),
        st.sampled_from([XML_CONTENT_TYPE, JSON_CONTENT_TYPE]).map(lambda text: "-" + text),
        st.just(XML_CONTENT_TYPE[:9]),
        st.just(XML_CONTENT_TYPE[9:]),
    ),
    max_size=16,
)


@settings(max_examples=2000, deadline=None)
@given(VALUES)
def test_values_are_encoded_at_once_exactly_when_they_were(values: list[str]) -> None:
    """`_encoded_values` takes the values at once (no `_percent_encode` of each) exactly when
    the regular expression matched each one, and gives what encoding each one gives."""
    one_by_one: list[str] = []

    def percent_encode(text: str) -> str:
        one_by_one.append(text)
        return _ENCODED.get(text) or (
            text if NOTHING_TO_ENCODE.fullmatch(text) else _encode_bytes(text)
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adapter.bus.events, "_percent_encode", percent_encode)
        encoded = list(_encoded_values(values))
    assert (one_by_one == []) == all(map(ENCODED_AT_ONCE.fullmatch, values))
    assert encoded == [percent_encode(value) for value in values]


def test_values_that_spell_a_content_type_together_are_each_encoded() -> None:
    # Only a value that is a content type is taken as one, not one made of the joined values.
    halves = ["id-1", XML_CONTENT_TYPE[:9], XML_CONTENT_TYPE[9:], ""]
    assert list(_encoded_values(halves)) == ["id-1", "text/xml;", "%20charset=utf-8", ""]
    assert list(_encoded_values(["a", JSON_CONTENT_TYPE, ""])) == [
        "a",
        "application/json;%20charset=utf-8",
        "",
    ]


def test_nats_reading_refuses_overlong_utf8_and_accepts_quoted_values() -> None:
    with pytest.raises(InvalidEvent):
        from_nats({"ce-id": "%C0%A0"})
    assert from_nats({"ce-id": '"a b"'}) == {"id": "a b"}
    assert from_nats({"ce-id": "%e2%82%ac"}) == {"id": "\u20ac"}


@pytest.mark.parametrize("value", ["a% 1", "%+1", "%-1", "100%", "%1", "%zz"])
def test_nats_reading_refuses_a_percent_that_does_not_start_two_hex_digits(value: str) -> None:
    with pytest.raises(InvalidEvent):
        from_nats({"ce-id": value})


def test_nats_headers_split_into_attributes_and_the_others_as_they_are() -> None:
    headers = {
        "CE-Id": "cmd-1",
        "ce-specversion": "1.0",
        "Ce-UftpSender": "Euro %E2%82%AC",
        "Nats-Msg-Id": "m-1",
        "X-Trace": "%41 as it is",
        "cex-not": "an attribute",
    }
    attributes, others = split_nats(headers)
    assert attributes == {"id": "cmd-1", "specversion": "1.0", "uftpsender": "Euro \u20ac"}
    assert others == {"Nats-Msg-Id": "m-1", "X-Trace": "%41 as it is", "cex-not": "an attribute"}
    assert from_nats(headers) == attributes
    assert split_nats({}) == ({}, {})
    with pytest.raises(InvalidEvent):
        split_nats({"ce-id": "%C0%A0", "X-Trace": "t"})


def test_nats_reading_keeps_plain_and_non_ascii_values_as_they_are() -> None:
    assert from_nats({"ce-id": "cro.example.com", "ce-x": "Euro \u20ac"}) == {
        "id": "cro.example.com",
        "x": "Euro \u20ac",
    }


@pytest.mark.parametrize("version", VERSIONS, ids=version_id)
def test_the_json_form_round_trips_every_message_type(version: str) -> None:
    for message in all_samples(version).values():
        rendered = message_to_json(message)
        assert message_from_json(rendered) == message, message.xml_name
        # The same JSON from the signed XML as from the model.
        assert xml_to_json(codec.encode(message)) == rendered


def test_the_json_form_names_attributes_and_child_elements_as_the_xml_does() -> None:
    xml = (
        b'<DSOPortfolioUpdate Version="3.1.0" TimeZone="Europe/Amsterdam">'
        b'<CongestionPoint EntityAddress="ean.1"><Connection EntityAddress="ean.2"/>'
        b'<Connection EntityAddress="ean.3"/></CongestionPoint></DSOPortfolioUpdate>'
    )
    import json

    assert json.loads(xml_to_json(xml)) == {
        "DSOPortfolioUpdate": {
            "Version": "3.1.0",
            "TimeZone": "Europe/Amsterdam",
            "CongestionPoint": [
                {
                    "EntityAddress": "ean.1",
                    "Connection": [{"EntityAddress": "ean.2"}, {"EntityAddress": "ean.3"}],
                }
            ],
        }
    }


@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b'{"A": {}, "B": {}}',
        b'{"A": {"x": 1}}',
        b'{"A": {"x": [1]}}',
        b'{"A b": {}}',
        b'{"A": {"x": "\\u0001"}}',
        b"not json",
        b'{"A": ' * 5000 + b"{}" + b"}" * 5000,
    ],
)
def test_json_that_is_not_of_the_form_is_invalid_xml(text: bytes) -> None:
    with pytest.raises(InvalidXml):
        json_to_element(text)


def test_schema_invalid_json_is_refused_by_the_codec() -> None:
    with pytest.raises(InvalidXml):
        message_from_json(b'{"DSOPortfolioUpdate": {"Version": "3.1.0"}}')


def test_a_bad_extension_name_beside_the_adapters_own_is_refused_and_named() -> None:
    # The adapter's own names pass by a subset test; one other among them is matched, and the
    # first bad one in the event's order is the one named.
    with pytest.raises(InvalidEvent, match="'Bad'"):
        event(extensions={"correlationid": "c-1", "Bad": "x", "Worse_": "y"})
    assert event(extensions={"correlationid": "c-1", "subjectx": "x"}).extensions["subjectx"]


def test_the_journal_gives_every_extension_as_a_plain_string_and_leaves_out_empty_ones() -> None:
    # Roles are `StrEnum`s: the relay publishes these very values, and the RabbitMQ port's
    # header encoder takes `str` only (tests/bus/test_rabbitmq.py).
    journal = cro_journal()
    outbound = OutboundRecord(
        message_id="m-2",
        recipient_domain="dso.example.com",
        recipient_role=Role.DSO,
        message_type="TestMessage",
        conversation_id="c-2",
        reference_message_id=None,
        endpoint="https://dso.example.com/shapeshifter/api/v3/message",
        envelope=b"<SignedMessage/>",
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
        deadline=datetime(2024, 5, 2, tzinfo=UTC),
    )
    records = [
        journal.inbound(dso_test_message(), b"<TestMessage/>", sender_role=Role.DSO),
        journal.outcome(outbound, OutboundStatus.DELIVERED, "HTTP 200", command_id="cmd-1"),
        journal.error("deadline", "late", extensions={"uftpsenderrole": Role.AGR}, key="k"),
        *journal.register_change(
            UpdateKind.DSO,
            UpdateMeta(
                sender_domain="dso.example.com",
                message_id="m-3",
                time_stamp=datetime(2024, 5, 1, tzinfo=UTC),
                recorded_at=datetime(2024, 5, 1, tzinfo=UTC),
                conversation_id="c-3",
            ),
            {},
        ),
    ]
    for record in records:
        assert record.cloud_event is not None
        assert record.cloud_event.attributes() is record.attributes
        assert all(type(value) is str and value for value in record.attributes.values())
    inbound, outcome, error, register = (record.attributes for record in records)
    assert (inbound["uftpsenderrole"], inbound["uftprecipientrole"]) == ("DSO", "CRO")
    assert "causationid" not in inbound and "commandid" not in inbound
    assert (outcome["uftpsenderrole"], outcome["uftprecipientrole"]) == ("CRO", "DSO")
    assert outcome["commandid"] == "cmd-1" and "causationid" not in outcome
    assert error["uftpsenderrole"] == "AGR" and "commandid" not in error
    assert register["uftpsenderrole"] == "DSO"
