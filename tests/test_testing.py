"""`adapter.testing`: its builders make what the real components accept, its network is real,
and its client is heard as a peer."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from datetime import UTC, datetime

import pytest

from adapter import (
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    Peer,
    Result,
    Role,
    TestMessageResponse,
)
from adapter.dso import period_problems
from adapter.keys import generate
from adapter.testing import (
    Network,
    PeerClient,
    accepting,
    composed,
    free_port,
    portfolio_update,
)
from adapter.uftp import codec
from tests.uftp.samples import make_dso_portfolio_query, make_dso_portfolio_update

CRO, DSO = "cro.example.com", "dso.example-grid.nl"


def test_composed_leaves_every_metadata_field_for_the_participant() -> None:
    message = composed(make_dso_portfolio_update())
    assert (message.version, message.sender_domain, message.recipient_domain) == ("", "", "")
    assert (message.time_stamp, message.message_id, message.conversation_id) == (None, "", "")
    assert message.congestion_points == make_dso_portfolio_update().congestion_points


@pytest.mark.parametrize("end_every", [0, 3])
def test_a_portfolio_update_passes_the_schema_and_the_cros_period_rules(end_every: int) -> None:
    update = portfolio_update(3, 7, end_every=end_every)
    assert sum(len(point.connections) for point in update.congestion_points) == 21
    assert period_problems(update) == ()
    filled = dataclasses.replace(
        update,
        version="3.1.0",
        sender_domain=DSO,
        recipient_domain=CRO,
        time_stamp=datetime.now(UTC),
        message_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
    )
    assert codec.decode(codec.encode(filled)) == filled


def test_only_a_request_can_be_accepted() -> None:
    with pytest.raises(ValueError, match="not a request"):
        accepting(TestMessageResponse)


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))


async def test_the_accepting_router_answers_over_the_network(network: Network) -> None:
    seen: list[object] = []
    cro = network.create(
        CRO, Role.CRO, router=accepting(DSOPortfolioUpdate, DSOPortfolioQuery, seen=seen)
    )
    dso = network.create(DSO, Role.DSO)
    await network.start(cro, dso)
    network.introduce(cro, dso)

    update = await dso.request(composed(portfolio_update()), to=CRO, timeout=10)
    query = composed(make_dso_portfolio_query())
    answer = await dso.request(query, to=CRO, timeout=10)

    assert update.result is Result.ACCEPTED
    assert isinstance(answer, DSOPortfolioQueryResponse) and answer.result is Result.ACCEPTED
    assert (answer.time_zone, answer.period) == (query.time_zone, query.period)
    assert [type(message) for message in seen] == [DSOPortfolioUpdate, DSOPortfolioQuery]


async def test_the_peer_client_is_heard_as_the_peer_it_plays(network: Network) -> None:
    cro = network.create(CRO, Role.CRO, router=accepting(DSOPortfolioUpdate))
    await network.start(cro)
    peer = PeerClient(DSO, Role.DSO)
    message = dataclasses.replace(
        make_dso_portfolio_update(), message_id=str(uuid.uuid4()), time_stamp=datetime.now(UTC)
    )
    status, text = await peer.post(cro.url(), peer.seal(message))
    assert (status, text) == (401, f"unknown sender {DSO} in role DSO\n")

    cro.directory.add(Peer(DSO, Role.DSO, "http://127.0.0.1:9/", (peer.keys.public.signing,)))  # type: ignore[attr-defined]
    assert await peer.post(cro.url(), peer.seal(message)) == (200, "OK\n")
    forged = peer.seal(message, secret=generate().signing)
    assert (await peer.post(cro.url(), forged))[0] == 401
    assert (await peer.post(cro.url(), b"<SignedMessage"))[0] == 400
