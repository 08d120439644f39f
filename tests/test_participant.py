"""The participant end to end: two real participants on loopback exchanging signed messages."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapter import participant as participant_module
from adapter.directory import StaticDirectory
from adapter.keys import generate
from adapter.ops.observer import NullObserver
from adapter.participant import DeliveryFailed, Participant, ResponseTimeout, UnknownPeer
from adapter.router import HandlerContext, Router
from adapter.settings import ListenAddress
from adapter.store.base import InboundRecord, InboundStatus, OutboundStatus, SaveOutcome
from adapter.testing import FAST_DELIVERY, TEST_LIMITS, Network, composed, eventually
from adapter.uftp.errors import InvalidOutbound, InvalidXml, Rejection
from adapter.uftp.messages import (
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
    TestMessage,
    TestMessageResponse,
)
from tests.postgres import PG_DSN, Schema, import_asyncpg
from tests.uftp.samples import (
    make_dso_portfolio_query,
    make_dso_portfolio_update,
    make_dso_portfolio_update_response,
)

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"


class Recorder:
    """A router whose handlers remember what they saw."""

    def __init__(self) -> None:
        self.received: list[tuple[object, HandlerContext]] = []

    def of(self, kind: type) -> list:
        return [m for m, _ in self.received if isinstance(m, kind)]


def cro_router(recorder: Recorder) -> Router:
    router = Router()

    @router.on(DSOPortfolioUpdate)
    async def update(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse:
        recorder.received.append((message, ctx))
        if message.congestion_points[0].entity_address.endswith("reject"):
            raise Rejection("Invalid CongestionPoint", "TimeZone rejected")
        if message.congestion_points[0].entity_address.endswith("crash"):
            raise RuntimeError("handler bug")
        return DSOPortfolioUpdateResponse()

    @router.on(DSOPortfolioQuery)
    async def query(message: DSOPortfolioQuery, ctx: HandlerContext) -> PayloadResponse:
        recorder.received.append((message, ctx))
        await asyncio.sleep(0.5)  # a slow query: the request must still be answered
        return DSOPortfolioQueryResponse(time_zone=message.time_zone, period=message.period)

    return router


def dso_router(recorder: Recorder) -> Router:
    router = Router()
    for kind in (DSOPortfolioUpdateResponse, DSOPortfolioQueryResponse, TestMessageResponse):

        @router.on(kind)
        async def response(message: PayloadResponse, ctx: HandlerContext) -> None:
            recorder.received.append((message, ctx))

    return router


async def pair(
    network: Network, **cro_options: object
) -> tuple[Participant, Participant, Recorder, Recorder]:
    cro_seen, dso_seen = Recorder(), Recorder()
    cro = network.create(CRO, Role.CRO, router=cro_router(cro_seen), **cro_options)  # type: ignore[arg-type]
    dso = network.create(DSO, Role.DSO, router=dso_router(dso_seen))
    await network.start(cro, dso)
    network.introduce(cro, dso)
    return cro, dso, cro_seen, dso_seen


async def test_request_returns_the_correlated_response(network: Network) -> None:
    cro, dso, cro_seen, dso_seen = await pair(network)
    update = composed(make_dso_portfolio_update())

    response = await dso.request(update, to=CRO, timeout=10)

    assert isinstance(response, DSOPortfolioUpdateResponse)
    assert response.result is Result.ACCEPTED
    [(received, ctx)] = cro_seen.received
    assert received.congestion_points == update.congestion_points
    assert ctx.sender_domain == DSO and ctx.sender_role is Role.DSO
    assert response.reference_message_id == received.message_id
    assert response.conversation_id == received.conversation_id
    assert response.sender_domain == CRO and response.recipient_domain == DSO
    assert response.version == received.version == "3.1.0"
    # The response still reached the DSO's handler too.
    await eventually(lambda: len(dso_seen.of(DSOPortfolioUpdateResponse)) == 1)


async def test_test_message_is_answered_without_user_code(network: Network) -> None:
    cro, dso, _, _ = await pair(network)
    response = await dso.request(TestMessage(), to=CRO, role=Role.CRO, timeout=10)
    assert isinstance(response, TestMessageResponse)


async def test_a_handler_sends_and_awaits_messages_of_its_own_through_its_context(
    network: Network,
) -> None:
    """The context offers `send` and `request` (the `router.Sender` protocol), not the whole
    participant: a CRO handler asks the DSO for a TestMessage round trip before it answers."""
    router = Router()
    asked: list[PayloadResponse] = []
    answers: list[PayloadResponse] = []

    @router.on(DSOPortfolioUpdate)
    async def update(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse:
        asked.append(await ctx.request(TestMessage(), to=ctx.sender_domain, timeout=10))
        await ctx.send(TestMessage(), to=ctx.sender_domain)
        return DSOPortfolioUpdateResponse()

    @router.on(TestMessageResponse)
    async def answered(message: TestMessageResponse, ctx: HandlerContext) -> None:
        answers.append(message)

    dso_seen = Recorder()
    cro = network.create(CRO, Role.CRO, router=router)
    dso = network.create(DSO, Role.DSO, router=dso_router(dso_seen))
    await network.start(cro, dso)
    network.introduce(cro, dso)

    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    assert response.result is Result.ACCEPTED
    [answer] = asked
    assert isinstance(answer, TestMessageResponse) and answer.sender_domain == DSO
    # The one sent without waiting was answered too, to the CRO.
    await eventually(lambda: len(answers) == 2)


async def test_handler_rejection_reports_all_reasons(network: Network) -> None:
    cro, dso, _, _ = await pair(network)
    update = composed(make_dso_portfolio_update())
    point = dataclasses.replace(
        update.congestion_points[0], entity_address="ea1.2024-01.nl.example:cp-reject"
    )
    response = await dso.request(
        dataclasses.replace(update, congestion_points=(point,)), to=CRO, timeout=10
    )
    assert response.result is Result.REJECTED
    assert response.rejection_reason == "Invalid CongestionPoint; TimeZone rejected"


async def test_handler_that_raises_answers_rejected_and_serves_on(network: Network) -> None:
    cro, dso, _, _ = await pair(network)
    update = composed(make_dso_portfolio_update())
    point = dataclasses.replace(
        update.congestion_points[0], entity_address="ea1.2024-01.nl.example:cp-crash"
    )
    response = await dso.request(
        dataclasses.replace(update, congestion_points=(point,)), to=CRO, timeout=10
    )
    assert response.result is Result.REJECTED
    assert response.rejection_reason == "Invalid Message"
    again = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
    assert again.result is Result.ACCEPTED


async def test_unhandled_message_type_is_rejected_as_invalid_message(network: Network) -> None:
    cro, dso, _, _ = await pair(network)
    # The DSO has no handler for DSOPortfolioQuery... but the role rule forbids CRO -> DSO
    # queries anyway; so send a query to a CRO whose router lacks it.
    bare_cro = network.create("cro2.example.com", Role.CRO)
    await network.start(bare_cro)
    network.introduce(bare_cro, dso)
    query = dataclasses.replace(
        make_dso_portfolio_query(), message_id="", conversation_id="", time_stamp=None
    )
    response = await dso.request(query, to="cro2.example.com", timeout=10)
    assert response.result is Result.REJECTED
    assert response.rejection_reason == "Invalid Message"
    assert isinstance(response, DSOPortfolioQueryResponse)
    assert response.period == query.period  # required fields copied from the request


async def test_send_to_unknown_peer_is_refused(network: Network) -> None:
    _, dso, _, _ = await pair(network)
    with pytest.raises(UnknownPeer):
        await dso.send(composed(make_dso_portfolio_update()), to="nobody.example.com")


async def test_request_times_out_when_no_response_comes(network: Network) -> None:
    cro, dso, _, _ = await pair(network)
    query = dataclasses.replace(
        make_dso_portfolio_query(), message_id="", conversation_id="", time_stamp=None
    )
    with pytest.raises(ResponseTimeout):
        await dso.request(query, to=CRO, timeout=0.2)  # the handler takes 0.5 s


async def test_our_own_unsendable_message_is_invalid_outbound_and_not_queued(
    network: Network,
) -> None:
    """Text XML cannot carry (a lone surrogate) is our mistake: `send` raises InvalidOutbound,
    not the peer's InvalidXml, and nothing reaches the outbox."""
    cro, dso, _, _ = await pair(network)
    query = composed(make_dso_portfolio_query(entity_address="ea1.2024-01.nl.example:\udcff"))
    with pytest.raises(InvalidOutbound) as caught:
        await dso.send(query, to=CRO)
    assert not isinstance(caught.value, InvalidXml)
    assert await dso.store.pending_outbound() == []


async def test_late_response_still_reaches_its_handler(network: Network) -> None:
    cro, dso, _, dso_seen = await pair(network)
    query = dataclasses.replace(
        make_dso_portfolio_query(), message_id="", conversation_id="", time_stamp=None
    )
    with pytest.raises(ResponseTimeout):
        await dso.request(query, to=CRO, timeout=0.1)
    await eventually(lambda: len(dso_seen.of(DSOPortfolioQueryResponse)) == 1)


async def test_permanent_failure_is_surfaced_to_the_request(network: Network) -> None:
    cro, dso, _, _ = await pair(network)
    # The CRO does not know the DSO's current key: it answers 401, a permanent failure.
    stranger = network.create("dso3.example.com", Role.DSO)
    await network.start(stranger)
    stranger.directory.add(network.peer(cro))  # type: ignore[attr-defined]
    with pytest.raises(DeliveryFailed) as failure:
        await stranger.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
    assert failure.value.result.status == 401
    record = await stranger.store.get_outbound(failure.value.message_id)
    assert record is not None and record.status is OutboundStatus.FAILED


async def test_peer_down_then_back_is_delivered_after_retries(network: Network) -> None:
    cro_seen, dso_seen = Recorder(), Recorder()
    dso = network.create(DSO, Role.DSO, router=dso_router(dso_seen))
    cro = network.create(CRO, Role.CRO, router=cro_router(cro_seen))
    await network.start(cro, dso)
    network.introduce(cro, dso)
    port = cro.port
    await cro.stop()  # the CRO goes down

    sent = await dso.send(composed(make_dso_portfolio_update()), to=CRO)
    await eventually(lambda: _attempts(dso, sent.message_id, at_least=2), timeout=10)

    revived = network.create(CRO, Role.CRO, router=cro_router(cro_seen), port=port)
    await revived.start()
    network.introduce(revived, dso)

    await eventually(lambda: len(dso_seen.of(DSOPortfolioUpdateResponse)) == 1, timeout=15)
    record = await dso.store.get_outbound(sent.message_id)
    assert record is not None and record.status is OutboundStatus.DELIVERED
    attempts = await dso.store.attempts(sent.message_id)
    assert attempts[-1].http_status == 200
    assert all(a.outcome == "temporary" for a in attempts[:-1])
    assert len(cro_seen.received) == 1


async def _attempts(participant: Participant, message_id: str, *, at_least: int) -> bool:
    return len(await participant.store.attempts(message_id)) >= at_least


async def test_pending_delivery_survives_a_restart(network: Network) -> None:
    cro_seen, dso_seen = Recorder(), Recorder()
    cro = network.create(CRO, Role.CRO, router=cro_router(cro_seen))
    dso = network.create(DSO, Role.DSO, router=dso_router(dso_seen))
    await network.start(cro, dso)
    network.introduce(cro, dso)
    port = cro.port
    await cro.stop()

    sent = await dso.send(composed(make_dso_portfolio_update()), to=CRO)
    await eventually(lambda: _attempts(dso, sent.message_id, at_least=1))
    await dso.stop()  # the DSO stops with the delivery pending

    revived = network.create(CRO, Role.CRO, router=cro_router(cro_seen), port=port)
    await revived.start()
    restarted = network.create(DSO, Role.DSO, router=dso_router(dso_seen), store_name=DSO)
    await restarted.start()
    network.introduce(revived, restarted)

    await eventually(lambda: len(cro_seen.received) == 1, timeout=15)
    await eventually(lambda: len(dso_seen.of(DSOPortfolioUpdateResponse)) == 1, timeout=15)
    record = await restarted.store.get_outbound(sent.message_id)
    assert record is not None and record.status is OutboundStatus.DELIVERED


def test_handlers_register_once_per_type() -> None:
    router = Router()

    @router.on(TestMessage)
    async def first(message: TestMessage, ctx: HandlerContext) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):

        @router.on(TestMessage)
        async def second(message: TestMessage, ctx: HandlerContext) -> None:
            return None


async def test_response_metadata_is_filled_by_the_participant(network: Network) -> None:
    cro, dso, _, _ = await pair(network)
    before = datetime.now(UTC)
    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
    assert response.time_stamp is not None and response.time_stamp >= before
    # Our MessageIDs are in order of creation (adapter.uftp.identifiers): the request's, then
    # its answer's.
    request_id, response_id = (
        uuid.UUID(response.reference_message_id),
        uuid.UUID(response.message_id),
    )
    assert request_id.version == response_id.version == 7
    made = int(before.timestamp() * 1000)
    assert made <= request_id.int >> 80 <= response_id.int >> 80


async def test_schema_invalid_outbound_message_is_explained_after_the_peers_400(
    network: Network,
) -> None:
    _, dso, cro_seen, _ = await pair(network)
    update = composed(make_dso_portfolio_update())
    point = dataclasses.replace(update.congestion_points[0], entity_address="not-an-address")
    with pytest.raises(DeliveryFailed) as failure:
        await dso.request(dataclasses.replace(update, congestion_points=(point,)), to=CRO)
    assert failure.value.result.status == 400
    assert "checked here" in str(failure.value)
    assert "EntityAddress" in str(failure.value)
    assert cro_seen.received == []


async def test_only_the_addressed_peer_can_answer_a_request(network: Network) -> None:
    """A response referring to our request resolves it only when it comes from the peer the
    request went to, as the response type of that request."""
    from adapter.uftp import codec, envelope

    cro, dso, _, _ = await pair(network)
    impostor = network.create("cro9.example.com", Role.CRO)
    await network.start(impostor)
    network.introduce(impostor, dso)
    query = dataclasses.replace(
        make_dso_portfolio_query(), message_id="", conversation_id="", time_stamp=None
    )
    pending = asyncio.create_task(dso.request(query, to=CRO, timeout=5))
    await eventually(lambda: len(dso.waiters.awaiting()) == 1)
    [(request_id, conversation)] = dso.waiters.awaiting()

    async def answer_as(who: Participant, kind: type) -> None:
        fields = {"time_zone": query.time_zone, "period": query.period}
        forged = kind(
            version="3.1.0",
            sender_domain=who.domain,
            recipient_domain=DSO,
            time_stamp=datetime.now(UTC),
            message_id=str(uuid.uuid4()),
            conversation_id=conversation,
            reference_message_id=request_id,
            result=Result.REJECTED,
            rejection_reason="forged",
            **(fields if kind is DSOPortfolioQueryResponse else {}),
        )
        body = envelope.seal(
            codec.encode(forged), network.keys[who.domain].signing, who.domain, Role.CRO
        )
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.post(dso.url(), data=body, headers={"Content-Type": "text/xml"}) as response,
        ):
            assert response.status == 200

    await answer_as(impostor, DSOPortfolioQueryResponse)  # the wrong peer
    await answer_as(cro, DSOPortfolioUpdateResponse)  # the right peer, the wrong type
    await asyncio.sleep(0.2)
    assert not pending.done()
    response = await pending  # the CRO's real answer (its handler takes 0.5 s)
    assert response.result is Result.ACCEPTED
    assert response.sender_domain == CRO


class Order(NullObserver):
    """Writes into a shared log the moment its participant's endpoint answers 200."""

    def __init__(self, log: list[str], who: str) -> None:
        self.log, self.who = log, who

    def http_response(self, status: int) -> None:
        self.log.append(f"{self.who} answers {status}")


class Logged(list[tuple[object, HandlerContext]]):
    """A recorder's list that also writes into the shared log when a handler adds to it."""

    def __init__(self, log: list[str], who: str) -> None:
        super().__init__()
        self.log, self.who = log, who

    def append(self, item: tuple[object, HandlerContext]) -> None:
        self.log.append(f"{self.who} handles")
        super().append(item)


async def test_handling_starts_before_the_200_is_written(network: Network) -> None:
    """A request: stored, then the handler's first step (the CRO's response on its way to
    the store), then the 200: the sender, woken by its 200, does not come between a request
    and its handling. A response has no response to start: its 200 comes first, so that its
    sender has marked its message delivered when the waiting `request()` returns."""
    cro, dso, cro_seen, dso_seen = await pair(network)
    log: list[str] = []
    cro.observer, dso.observer = Order(log, "cro"), Order(log, "dso")
    cro_seen.received, dso_seen.received = Logged(log, "cro"), Logged(log, "dso")

    await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    await eventually(lambda: "dso answers 200" in log and "dso handles" in log)
    assert log == ["cro handles", "cro answers 200", "dso answers 200", "dso handles"]


async def test_a_large_message_gets_its_200_before_its_handling(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large message's handler may work for long before it first pauses: its sender is
    not kept waiting for its 200 meanwhile."""
    monkeypatch.setattr(participant_module, "THREAD_THRESHOLD", 0)  # every message is large
    cro, dso, cro_seen, dso_seen = await pair(network)
    log: list[str] = []
    cro.observer, dso.observer = Order(log, "cro"), Order(log, "dso")
    cro_seen.received, dso_seen.received = Logged(log, "cro"), Logged(log, "dso")

    await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    await eventually(lambda: "dso answers 200" in log and "dso handles" in log)
    assert log == ["cro answers 200", "cro handles", "dso answers 200", "dso handles"]


class Handled(NullObserver):
    """The handlings that ended (`Observer.handled`): message type and outcome."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    def handled(self, message_type: str, outcome: str, seconds: float) -> None:
        self.ended.append((message_type, outcome))


class StoreCalls:
    """What the participant asks of its (real) store: the status of each inbound message it
    saves, and the messages it finishes; and the handlings that ended (`observer`), to wait
    for instead of a pause."""

    def __init__(self, participant: Participant, monkeypatch: pytest.MonkeyPatch) -> None:
        self.saved: dict[str, InboundStatus] = {}
        self.finished: list[str] = []
        self.observer = Handled()
        participant.observer = self.observer
        store = participant.store
        save, finish = store.save_inbound, store.finish_inbound

        async def save_inbound(record: InboundRecord, **kwargs: Any) -> SaveOutcome:
            self.saved[record.message_type] = record.status
            return await save(record, **kwargs)

        async def finish_inbound(sender: str, message_id: str, *args: Any, **kwargs: Any) -> None:
            self.finished.append(message_id)
            await finish(sender, message_id, *args, **kwargs)

        monkeypatch.setattr(store, "save_inbound", save_inbound)
        monkeypatch.setattr(store, "finish_inbound", finish_inbound)


async def test_a_response_awaited_here_is_stored_handled_at_once(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its handling is the `request()` of this process, which a crash ends too: one statement
    to the store (stored handled), none to finish it after."""
    cro = network.create(CRO, Role.CRO, router=cro_router(Recorder()))
    dso = network.create(DSO, Role.DSO)  # no handler of its own for the response
    await network.start(cro, dso)
    network.introduce(cro, dso)
    calls = StoreCalls(dso, monkeypatch)

    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    assert calls.saved == {"DSOPortfolioUpdateResponse": InboundStatus.HANDLED}
    await eventually(lambda: calls.observer.ended == [("DSOPortfolioUpdateResponse", "ok")])
    assert calls.finished == []
    stored = await dso.store.get_inbound(CRO, response.message_id)
    assert stored is not None and stored.status is InboundStatus.HANDLED
    assert await dso.store.unfinished_inbound() == []


async def test_a_response_with_a_handler_is_stored_unfinished_then_finished(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler of the response's type: its handling must survive a crash, so the response
    is stored received and finished after."""
    cro, dso, _, dso_seen = await pair(network)  # the DSO handles responses too
    calls = StoreCalls(dso, monkeypatch)

    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
    await eventually(lambda: response.message_id in calls.finished)
    assert calls.saved == {"DSOPortfolioUpdateResponse": InboundStatus.RECEIVED}
    assert await dso.store.unfinished_inbound() == []


async def test_a_response_nobody_here_awaits_is_stored_handled_at_once_on_a_store_of_one(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent with `send()` and no handler: on a store of one process no other process may
    await it either, so handling it is nothing that must survive a crash: stored handled,
    never finished after. (On a shared store it is stored unfinished: another process may
    await it, `test_a_shared_store_leaves_a_response_unfinished_unless_awaited_here`.)"""
    cro = network.create(CRO, Role.CRO, router=cro_router(Recorder()))
    bare = network.create(DSO, Role.DSO)  # no handler, and send()
    await network.start(cro, bare)
    network.introduce(cro, bare)
    calls = StoreCalls(bare, monkeypatch)

    await bare.send(composed(make_dso_portfolio_update()), to=CRO)

    await eventually(lambda: "DSOPortfolioUpdateResponse" in calls.saved)
    assert calls.saved == {"DSOPortfolioUpdateResponse": InboundStatus.HANDLED}
    await eventually(lambda: calls.observer.ended == [("DSOPortfolioUpdateResponse", "ok")])
    assert calls.finished == []
    assert await bare.store.unfinished_inbound() == []


async def test_a_shared_store_leaves_a_response_unfinished_unless_awaited_here() -> None:
    """The matcher decides whether resolving a response is this process's memory alone: in
    memory (one process per store) always; across processes (`SharedWaiters`) only when a
    request here awaits it - else the process that awaits it must hear of it even after a
    crash here, so the participant stores it unfinished (`Participant._settles`)."""
    import_asyncpg()
    from adapter.store.postgres import PostgresStore
    from adapter.waiters import SharedWaiters, Waiters, matcher_for

    store = PostgresStore("postgresql://uftp@127.0.0.1:9/none", schema="never_opened")
    shared = matcher_for(store.coordinator(), store)  # nothing connects before open
    assert isinstance(shared, SharedWaiters)
    alone = Waiters()
    request = make_dso_portfolio_update()
    for matcher in (shared, alone):
        matcher.expect(request, CRO)
    answer = make_dso_portfolio_update_response(
        reference_message_id=request.message_id, conversation_id=request.conversation_id
    )
    stranger = dataclasses.replace(answer, reference_message_id=str(uuid.uuid4()))

    assert shared.resolves_in_memory(answer, CRO)
    assert not shared.resolves_in_memory(stranger, CRO)
    assert not shared.resolves_in_memory(answer, "someone-else.example")
    assert alone.resolves_in_memory(answer, CRO) and alone.resolves_in_memory(stranger, CRO)
    await shared.close()


async def test_a_response_whose_request_awaits_a_retry_is_stored_unfinished_then_finished(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's first POST got a 503 though the CRO stored it (the 200 lost on the way
    back), and its response arrives while the request waits for its retry: handling the
    response ends that retry (`Outbox.answered`), which must survive a crash, so the
    response is stored received and finished after, once, though a `request()` here awaits
    it and it has no handler."""
    router = Router()

    @router.on(DSOPortfolioUpdate)
    async def after_the_503(message: DSOPortfolioUpdate, ctx: HandlerContext) -> None:
        await eventually(lambda: dso.outbox.awaits_retry(message.message_id))

    cro = network.create(CRO, Role.CRO, router=router)
    slow_retry = dataclasses.replace(  # its retry not before 15 s, well within the deadline
        FAST_DELIVERY,
        deadline_seconds=300.0,
        backoff_initial_seconds=30.0,
        backoff_max_seconds=60.0,
    )
    dso = network.create(DSO, Role.DSO, delivery=slow_retry)  # no handler for the response
    await network.start(cro, dso)
    network.introduce(cro, dso)
    front = await lossy_front(cro.url())
    try:
        dso.directory.add(network.peer(cro, endpoint=front.url))  # type: ignore[attr-defined]
        calls = StoreCalls(dso, monkeypatch)
        handled = calls.observer

        response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

        await eventually(lambda: ("DSOPortfolioUpdateResponse", "ok") in handled.ended)
        assert front.hits == 1
        assert calls.saved == {"DSOPortfolioUpdateResponse": InboundStatus.RECEIVED}
        assert calls.finished == [response.message_id]
        assert await dso.store.unfinished_inbound() == []
        assert not dso.outbox.awaits_retry(response.reference_message_id)
        record = await dso.store.get_outbound(response.reference_message_id)
        assert record is not None and record.status is OutboundStatus.DELIVERED
    finally:
        await front.runner.cleanup()


@dataclasses.dataclass
class LossyFront:
    """A front end that forwards each POST to its participant, then answers 503."""

    runner: web.AppRunner
    url: str
    hits: int = 0


async def lossy_front(target: str) -> LossyFront:
    async def lossy(request: web.Request) -> web.Response:
        front.hits += 1
        body = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.post(target, data=body, headers={"Content-Type": "text/xml"}) as forwarded,
        ):
            assert forwarded.status == 200
        return web.Response(status=503, text="the 200 got lost\n")

    app = web.Application()
    app.router.add_post("/{tail:.*}", lossy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    front = LossyFront(runner, f"http://127.0.0.1:{port}/shapeshifter/api/v3/message")
    return front


async def test_on_postgresql_a_response_nobody_here_awaits_is_stored_unfinished(
    postgres_schema: Schema, network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A participant on a shared store (PostgreSQL), no handler for responses: a response to
    a message sent with `send()` may be awaited by another process of the store, which must
    hear of it even if this one dies first: stored received, finished after its handling. A
    response a `request()` of this process awaits is its memory alone: stored handled at
    once, never finished after."""
    from adapter.store.postgres import PostgresStore

    cro = network.create(CRO, Role.CRO, router=cro_router(Recorder()))
    keys = network.keys.setdefault(DSO, generate())
    dso = Participant(
        domain=DSO,
        role=Role.DSO,
        keys=keys,
        store=PostgresStore(PG_DSN, schema=postgres_schema.name),
        directory=StaticDirectory([]),
        listen=ListenAddress("127.0.0.1", 0),
        delivery=FAST_DELIVERY,
        limits=TEST_LIMITS,
    )
    network.participants.append(dso)  # (stopped before its schema is dropped: fixture order)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    calls = StoreCalls(dso, monkeypatch)
    handled = calls.observer

    await dso.send(TestMessage(), to=CRO)
    await eventually(lambda: ("TestMessageResponse", "ok") in handled.ended)
    assert calls.saved == {"TestMessageResponse": InboundStatus.RECEIVED}
    assert len(calls.finished) == 1
    stored = await dso.store.get_inbound(CRO, calls.finished[0])
    assert stored is not None and stored.message_type == "TestMessageResponse"
    assert stored.status is InboundStatus.HANDLED

    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
    await eventually(lambda: ("DSOPortfolioUpdateResponse", "ok") in handled.ended)
    assert calls.saved["DSOPortfolioUpdateResponse"] is InboundStatus.HANDLED
    assert response.message_id not in calls.finished and len(calls.finished) == 1
    stored = await dso.store.get_inbound(CRO, response.message_id)
    assert stored is not None and stored.status is InboundStatus.HANDLED
    assert await dso.store.unfinished_inbound() == []
