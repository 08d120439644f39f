"""The answers every request is owed (message-validation.md) and the metadata of what we send
(metadata-attributes.md), built by the core without a clock or a participant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapter.uftp import answers, codec
from adapter.uftp.errors import Reason
from adapter.uftp.messages import (
    RESPONSE_TYPES,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdateResponse,
    PayloadMessage,
    Result,
    TestMessageResponse,
)

from . import samples

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OURS = ("3.1.0", "3.0.0")
ANSWER_ID = "0b6e5f2a-9d1c-4c53-a4de-4b9f3e1d2c10"
REQUESTS = [cls for cls in samples.MESSAGE_CLASSES if cls in RESPONSE_TYPES]


def test_fill_gives_every_metadata_field() -> None:
    composed = DSOPortfolioUpdateResponse()
    filled = answers.fill(
        composed,
        version="3.0.0",
        sender_domain=samples.CRO_DOMAIN,
        recipient_domain=samples.DSO_DOMAIN,
        time_stamp=NOW,
        message_id="m-1",
        conversation_id="c-1",
    )
    assert (filled.version, filled.sender_domain, filled.recipient_domain) == (
        "3.0.0",
        samples.CRO_DOMAIN,
        samples.DSO_DOMAIN,
    )
    assert (filled.time_stamp, filled.message_id, filled.conversation_id) == (NOW, "m-1", "c-1")
    assert composed.message_id == ""  # a new message; the composed one is untouched


def test_accepted_copies_the_business_fields_the_response_requires() -> None:
    query = samples.make_dso_portfolio_query()
    response = answers.accepted(query)
    assert isinstance(response, DSOPortfolioQueryResponse)
    assert response.result is Result.ACCEPTED and response.rejection_reason is None
    assert (response.time_zone, response.period) == (query.time_zone, query.period)


def test_rejected_holds_every_reason_separated_by_semicolons() -> None:
    response = answers.rejected(
        samples.make_dso_portfolio_update(), [Reason.BARRED_SENDER, Reason.UNSUPPORTED_VERSION]
    )
    assert response.result is Result.REJECTED
    assert response.rejection_reason == "Barred Sender; Unsupported Version"


@pytest.mark.parametrize("request_type", REQUESTS, ids=lambda cls: cls.xml_name)
def test_an_answer_is_of_the_response_type_of_its_request(
    request_type: type[PayloadMessage],
) -> None:
    request = samples.sample(request_type)
    response = answers.answer(
        request,
        None,
        sender_domain=samples.CRO_DOMAIN,
        recipient_domain=request.sender_domain,
        versions=OURS,
        time_stamp=NOW,
        message_id=ANSWER_ID,
    )
    assert type(response) is RESPONSE_TYPES[request_type]
    # Its metadata complete: the codec refuses to write a message without (IncompleteMessage).
    # Not validated: a bare Accepted AGRPortfolioQueryResponse lacks the DSO-View the schema
    # wants, which the CRO's handler supplies.
    codec.encode(response, validate=False)


@pytest.mark.parametrize(("version", "written"), [("3.0.0", "3.0.0"), ("4.0.0", "3.1.0")])
def test_an_answer_is_in_the_version_of_its_request_when_we_speak_it(
    version: str, written: str
) -> None:
    request = samples.make_dso_portfolio_update(version)
    response = answers.answer(
        request,
        DSOPortfolioUpdateResponse(),
        sender_domain=samples.CRO_DOMAIN,
        recipient_domain=samples.DSO_DOMAIN,
        versions=OURS,
        time_stamp=NOW,
        message_id=ANSWER_ID,
    )
    assert response.version == written
    assert answers.response_version(request, OURS) == written


def test_an_answer_joins_the_conversation_and_refers_to_its_request() -> None:
    request = samples.make_test_message("4.0.0")
    response = answers.answer(
        request,
        TestMessageResponse(),
        sender_domain=samples.CRO_DOMAIN,
        recipient_domain="elsewhere.example.com",
        versions=("4.0.0",),
        time_stamp=NOW,
        message_id=ANSWER_ID,
    )
    assert response.conversation_id == request.conversation_id
    assert response.reference_message_id == request.message_id
    assert response.message_id == ANSWER_ID and response.time_stamp == NOW
    # The recipient is whom the caller names: the verified sender of the envelope.
    assert response.recipient_domain == "elsewhere.example.com"
