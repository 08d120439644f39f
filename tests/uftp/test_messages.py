"""A message type is one class: what the protocol knows of it (its response, who may send it
to whom, the 3.x name of a response's reference) is written on the class, and every table the
adapter looks things up in is derived from the classes."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import date
from typing import ClassVar

import pytest

from adapter.uftp import codec, messages
from adapter.uftp.messages import (
    MESSAGE_TYPES,
    RESPONSE_TYPES,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    FlexMessage,
    PayloadMessage,
    PayloadRequest,
    PayloadResponse,
    Role,
)
from adapter.uftp.rules import may_send


def defined_here() -> set[type[PayloadMessage]]:
    """The message types `messages` defines, found by looking, not by its tables."""
    return {
        cls
        for _, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, PayloadMessage)
        and cls.__module__ == messages.__name__
        and cls not in (PayloadMessage, PayloadRequest, PayloadResponse, FlexMessage)
    }


def test_the_tables_list_exactly_the_classes() -> None:
    kinds = defined_here()
    assert set(MESSAGE_TYPES.values()) == kinds
    assert all(MESSAGE_TYPES[cls.xml_name] is cls for cls in kinds)
    requests = {cls for cls in kinds if issubclass(cls, PayloadRequest)}
    responses = {cls for cls in kinds if issubclass(cls, PayloadResponse)}
    assert requests | responses == kinds and len(requests) == len(responses) == 13
    assert set(RESPONSE_TYPES) == requests
    assert set(RESPONSE_TYPES.values()) == responses  # one response type per request type


def test_every_request_names_its_response_and_the_response_its_request() -> None:
    for request, response in RESPONSE_TYPES.items():
        assert issubclass(request, PayloadRequest)
        assert request.response_type is response
        assert response.request_type is request
        # The type argument names it: DSOPortfolioUpdate(PayloadRequest["...Response"]).
        assert response.__name__ in repr(request.__orig_bases__)  # type: ignore[attr-defined]


def test_every_type_has_its_roles_and_a_response_goes_back_the_way_its_request_came() -> None:
    for request, response in RESPONSE_TYPES.items():
        assert request.sender_roles and request.recipient_roles, request.__name__
        assert response.sender_roles == request.recipient_roles
        assert response.recipient_roles == request.sender_roles


def test_every_response_says_how_3x_spells_its_reference() -> None:
    for response in RESPONSE_TYPES.values():
        assert "v3_reference" in vars(response), f"{response.__name__} sets no v3_reference"
    assert DSOPortfolioUpdateResponse.v3_reference == "DSOPortfolioUpdateResponseMessageID"
    assert DSOPortfolioQueryResponse.v3_reference == "DSOPortfolioQueryMessageID"


def test_every_type_has_its_codec() -> None:
    assert set(codec._READERS) == set(MESSAGE_TYPES.values())
    assert set(codec._WRITERS) == set(MESSAGE_TYPES.values())


def test_a_request_accepts_only_the_response_it_names() -> None:
    update = DSOPortfolioUpdate(time_zone="Europe/Amsterdam", congestion_points=())
    answer = DSOPortfolioUpdateResponse()
    assert update.response_from(answer) is answer
    with pytest.raises(TypeError, match="DSOPortfolioQueryResponse does not answer"):
        update.response_from(DSOPortfolioQueryResponse(time_zone="UTC", period=date(2025, 1, 1)))


# --- a new message type -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(PayloadRequest["PingResponse"]):
    xml_name: ClassVar[str] = "Ping"
    sender_roles: ClassVar[frozenset[Role]] = frozenset({Role.AGR})
    recipient_roles: ClassVar[frozenset[Role]] = frozenset({Role.CRO})


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResponse(PayloadResponse):
    xml_name: ClassVar[str] = "PingResponse"
    v3_reference: ClassVar[str | None] = "PingMessageID"


def test_a_new_message_type_is_one_class_and_its_response() -> None:
    kinds = messages._bind_responses({"Ping": Ping, "PingResponse": PingResponse})
    assert kinds == (Ping, PingResponse)
    assert Ping.response_type is PingResponse and PingResponse.request_type is Ping
    assert may_send(Ping, Role.AGR, Role.CRO) and not may_send(Ping, Role.DSO, Role.CRO)
    assert may_send(PingResponse, Role.CRO, Role.AGR)
    assert not may_send(PingResponse, Role.AGR, Role.CRO)


def test_a_response_no_request_names_is_refused() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Orphan(PayloadResponse):
        xml_name: ClassVar[str] = "OrphanResponse"
        v3_reference: ClassVar[str | None] = None

    with pytest.raises(TypeError, match="no request type names Orphan"):
        messages._bind_responses({"Orphan": Orphan})


def test_a_request_that_names_no_known_response_is_refused() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Lost(PayloadRequest["NowhereResponse"]):
        xml_name: ClassVar[str] = "Lost"

    with pytest.raises(TypeError, match="Lost names no response type"):
        messages._bind_responses({"Lost": Lost})
