"""Fixtures for interop tests against shapeshifter-uftp 2.4.

--- Their services on loopback (`shapeshifter` fixture) --------------------------------------

`shapeshifter` starts their CRO and DSO services (FastAPI under uvicorn, each in a thread of
its own, as their `run_in_thread()` does) on free loopback ports. Their static lookup hooks,
`key_lookup_function` and `endpoint_lookup_function`, read an address book instead of DNS;
`TheirSide.introduce` puts one of our participants and one of their services in each other's
address book, as two operators exchanging endpoints and public keys would.

Their services call their `process_*` methods on their own executor threads. Every message
one of ours receives there is put on the service's `inbox`; a test waits for it with
`await service.next()`, which blocks a worker thread, never the event loop our participants
serve on. Their client is blocking (`requests`), so tests call it through `asyncio.to_thread`
for the same reason.

Importing shapeshifter-uftp sets its logger ("shapeshifter-uftp") to DEBUG, which prints
every message body; the fixture sets it to WARNING after the import, and back afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from base64 import b64encode
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("shapeshifter_uftp")

from shapeshifter_uftp import (
    ShapeshifterCroService,
    ShapeshifterDsoCroClient,
    ShapeshifterDsoService,
)
from shapeshifter_uftp import uftp as ss
from shapeshifter_uftp.exceptions import ClientTransportException

# Confines their parser to their own dataclasses (see adapter.interop.shapeshifter): without
# it their service may parse what we send into *our* models, which are named alike.
import adapter.interop.shapeshifter  # noqa: F401
from adapter.directory import Peer, StaticDirectory
from adapter.keys import PrivateKeys, generate
from adapter.participant import Participant
from adapter.testing import Network
from adapter.uftp.messages import Role

THEIR_PATH = "/shapeshifter/api/v3/message"
#: Loggers that print per message or per request: theirs, and uvicorn's.
NOISY_LOGGERS = ("shapeshifter-uftp", "uvicorn", "uvicorn.error", "uvicorn.access")


def b64(key: bytes) -> str:
    """A key in shapeshifter-uftp's format: base64 of the libsodium bytes."""
    return b64encode(key).decode("ascii")


class AddressBook:
    """(domain, role) -> endpoint and public signing key, for their static lookup hooks.

    An unknown pair gives None, which is what their service gets for a sender nobody
    introduced (see test_their_service_answers_500_to_an_unknown_sender).
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, str]] = {}

    def add(self, domain: str, role: str, endpoint: str, signing_key: bytes) -> None:
        self._entries[(domain, str(role))] = (endpoint, b64(signing_key))

    def key(self, domain: str, role: str) -> str | None:
        entry = self._entries.get((domain, str(role)))
        return entry[1] if entry else None

    def endpoint(self, domain: str, role: str) -> str | None:
        entry = self._entries.get((domain, str(role)))
        return entry[0] if entry else None


class Recording:
    """What their service's process_* methods received, in order, for tests to await."""

    inbox: queue.Queue[Any]
    #: Their client's failures while answering a message (ClientTransportException).
    failures: queue.Queue[ClientTransportException]

    def _record(self, message: Any) -> None:
        self.inbox.put(message)

    async def next(self, timeout: float = 10.0) -> Any:
        """The next message their service processed (fails the test after `timeout` s)."""
        return await _get(self.inbox, timeout)

    async def next_failure(self, timeout: float = 10.0) -> ClientTransportException:
        """The next refusal their client met while answering (e.g. HTTP 400 from us)."""
        failure: ClientTransportException = await _get(self.failures, timeout)
        return failure

    def empty(self) -> bool:
        return self.inbox.empty()


async def _get(source: queue.Queue[Any], timeout: float) -> Any:
    try:
        return await asyncio.to_thread(source.get, timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"their service received nothing within {timeout:g} s") from None


class TheirCro(Recording, ShapeshifterCroService):  # type: ignore[misc]  # untyped package
    """Their CRO, implemented as their docs show: answer each DSOPortfolioUpdate Accepted
    through the client the service provides."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = queue.Queue()
        self.failures = queue.Queue()

    def process_dso_portfolio_update(self, message: ss.DsoPortfolioUpdate) -> None:
        self._record(message)
        response = ss.DsoPortfolioUpdateResponse(
            conversation_id=message.conversation_id,
            dso_portfolio_update_message_id=message.message_id,
            result=ss.AcceptedRejected.ACCEPTED,
        )
        client = self.dso_client(message.sender_domain, version=message.version or self.version)
        client.send_dso_portfolio_update_response(response)

    def process_dso_portfolio_query(self, message: ss.DsoPortfolioQuery) -> None:
        self._record(message)

    def process_agr_portfolio_update(self, message: ss.AgrPortfolioUpdate) -> None:
        self._record(message)

    def process_agr_portfolio_query(self, message: ss.AgrPortfolioQuery) -> None:
        self._record(message)

    def process_test_message(self, message: ss.TestMessage, sender_role: ss.UsefRole) -> None:
        """Their stock answer (a TestMessageResponse), with its outcome kept for the test."""
        self._record(message)
        try:
            super().process_test_message(message, sender_role)
        except ClientTransportException as failure:
            self.failures.put(failure)
            raise

    def process_test_message_response(self, message: ss.TestMessageResponse) -> None:
        self._record(message)


class TheirDso(Recording, ShapeshifterDsoService):  # type: ignore[misc]  # untyped package
    """Their DSO service: it only receives (responses from our CRO, mostly)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = queue.Queue()
        self.failures = queue.Queue()

    def process_dso_portfolio_update_response(self, message: ss.DsoPortfolioUpdateResponse) -> None:
        self._record(message)

    def process_dso_portfolio_query_response(self, message: ss.DsoPortfolioQueryResponse) -> None:
        self._record(message)

    def process_test_message(self, message: ss.TestMessage, sender_role: ss.UsefRole) -> None:
        self._record(message)
        try:
            super().process_test_message(message, sender_role)
        except ClientTransportException as failure:
            self.failures.put(failure)
            raise

    def process_test_message_response(self, message: ss.TestMessageResponse) -> None:
        self._record(message)

    def process_d_prognosis(self, message: ss.DPrognosis) -> None:
        self._record(message)

    def process_flex_request_response(self, message: ss.FlexRequestResponse) -> None:
        self._record(message)

    def process_flex_offer(self, message: ss.FlexOffer) -> None:
        self._record(message)

    def process_flex_order_response(self, message: ss.FlexOrderResponse) -> None:
        self._record(message)

    def process_flex_offer_revocation(self, message: ss.FlexOfferRevocation) -> None:
        self._record(message)

    def process_flex_reservation_update_response(
        self, message: ss.FlexReservationUpdateResponse
    ) -> None:
        self._record(message)

    def process_flex_settlement_response(self, message: ss.FlexSettlementResponse) -> None:
        self._record(message)

    def process_metering(self, message: ss.Metering) -> None:
        self._record(message)


Service = TheirCro | TheirDso


class TheirSide:
    """Starts their services and introduces them to our participants (from `network`)."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.book = AddressBook()
        self.keys: dict[str, PrivateKeys] = {}
        self.services: list[Service] = []

    def cro(self, domain: str) -> TheirCro:
        service = TheirCro(domain, **self._options(domain))
        self._start(service)
        return service

    def dso(self, domain: str) -> TheirDso:
        service = TheirDso(domain, **self._options(domain))
        self._start(service)
        return service

    def _options(self, domain: str) -> dict[str, Any]:
        keys = self.keys.setdefault(domain, generate())
        return {
            "signing_key": b64(keys.signing),
            "key_lookup_function": self.book.key,
            "endpoint_lookup_function": self.book.endpoint,
            "host": "127.0.0.1",
            "port": 0,  # uvicorn binds a free port; `url` reads which
        }

    def _start(self, service: Service) -> None:
        service.server.config.access_log = False
        quiet()  # uvicorn's Config, built by their constructor, has just reset its loggers
        service.run_in_thread()
        self.services.append(service)
        public = self.keys[service.sender_domain].public.signing
        self.book.add(service.sender_domain, service.sender_role, url(service), public)

    def introduce(self, participant: Participant, service: Service) -> None:
        """Our participant in their address book, their service in our directory."""
        public = self.network.keys[participant.domain].public.signing
        self.book.add(participant.domain, participant.role, participant.url(), public)
        directory = participant.directory
        assert isinstance(directory, StaticDirectory)
        directory.add(self.peer(service))

    def peer(self, service: Service, **changes: Any) -> Peer:
        """Their service as a peer in our directory (fields overridable for odd cases)."""
        fields: dict[str, Any] = {
            "domain": service.sender_domain,
            "role": Role(service.sender_role),
            "endpoint": url(service),
            "signing_keys": (self.keys[service.sender_domain].public.signing,),
        }
        fields.update(changes)
        return Peer(**fields)

    def client_to(
        self, service: TheirDso, participant: Participant, **changes: Any
    ) -> ShapeshifterDsoCroClient:
        """Their DSO's client for our CRO, as their service hands it out; `changes` override
        its constructor arguments (e.g. a wrong `recipient_domain`)."""
        if not changes:
            client: ShapeshifterDsoCroClient = service.cro_client(participant.domain)
            return client
        arguments: dict[str, Any] = {
            "sender_domain": service.sender_domain,
            "signing_key": service.signing_key,
            "recipient_domain": participant.domain,
            "recipient_endpoint": participant.url(),
            "recipient_signing_key": self.book.key(participant.domain, participant.role),
        }
        arguments.update(changes)
        return ShapeshifterDsoCroClient(**arguments)

    def stop(self) -> None:
        for service in self.services:
            service.stop()  # uvicorn; their processing executors they leave running
            for executor in (service.inbound_executor, service.outbound_executor):
                executor.shutdown(wait=False, cancel_futures=True)


def quiet() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def url(service: Service) -> str:
    """The endpoint their service listens on (its uvicorn server's bound port)."""
    port = service.server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}{THEIR_PATH}"


@pytest.fixture
def shapeshifter(network: Network) -> Iterator[TheirSide]:
    """Their services; stopped after the test, before `network` stops our participants."""
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    quiet()
    side = TheirSide(network)
    try:
        yield side
    finally:
        side.stop()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# --- Their aggregator (`shapeshifter_agr` fixture) -------------------------------------------

# Appended below the module's imports so that this section stays a pure addition.
from shapeshifter_uftp import ShapeshifterAgrCroClient, ShapeshifterAgrService  # noqa: E402


class TheirAgr(Recording, ShapeshifterAgrService):  # type: ignore[misc]  # untyped package
    """Their AGR service: it only receives (responses from our CRO, mostly)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = queue.Queue()
        self.failures = queue.Queue()

    def process_agr_portfolio_update_response(self, message: ss.AgrPortfolioUpdateResponse) -> None:
        self._record(message)

    def process_agr_portfolio_query_response(self, message: ss.AgrPortfolioQueryResponse) -> None:
        self._record(message)

    def process_test_message(self, message: ss.TestMessage, sender_role: ss.UsefRole) -> None:
        self._record(message)

    def process_test_message_response(self, message: ss.TestMessageResponse) -> None:
        self._record(message)

    def process_d_prognosis_response(self, message: ss.DPrognosisResponse) -> None:
        self._record(message)

    def process_flex_request(self, message: ss.FlexRequest) -> None:
        self._record(message)

    def process_flex_offer_response(self, message: ss.FlexOfferResponse) -> None:
        self._record(message)

    def process_flex_offer_revocation_response(
        self, message: ss.FlexOfferRevocationResponse
    ) -> None:
        self._record(message)

    def process_flex_order(self, message: ss.FlexOrder) -> None:
        self._record(message)

    def process_flex_reservation_update(self, message: ss.FlexReservationUpdate) -> None:
        self._record(message)

    def process_flex_settlement(self, message: ss.FlexSettlement) -> None:
        self._record(message)

    def process_metering_response(self, message: ss.MeteringResponse) -> None:
        self._record(message)


class TheirAggregators:
    """Their AGR services, in the address book (and with the keys) of a `TheirSide`.

    Kept apart from `TheirSide`, whose helpers are typed for its CRO and DSO services; the
    steps are the same as `TheirSide._start` / `introduce` / `client_to`.
    """

    def __init__(self, side: TheirSide) -> None:
        self.side = side
        self.services: list[TheirAgr] = []

    def agr(self, domain: str) -> TheirAgr:
        service = TheirAgr(domain, **self.side._options(domain))
        service.server.config.access_log = False
        quiet()
        service.run_in_thread()
        self.services.append(service)
        public = self.side.keys[domain].public.signing
        self.side.book.add(domain, service.sender_role, self.url(service), public)
        return service

    @staticmethod
    def url(service: TheirAgr) -> str:
        port = service.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{THEIR_PATH}"

    def introduce(self, participant: Participant, service: TheirAgr) -> None:
        """Our participant in their address book, their AGR in our directory."""
        public = self.side.network.keys[participant.domain].public.signing
        self.side.book.add(participant.domain, participant.role, participant.url(), public)
        directory = participant.directory
        assert isinstance(directory, StaticDirectory)
        directory.add(
            Peer(
                domain=service.sender_domain,
                role=Role.AGR,
                endpoint=self.url(service),
                signing_keys=(self.side.keys[service.sender_domain].public.signing,),
            )
        )

    def client_to(self, service: TheirAgr, participant: Participant) -> ShapeshifterAgrCroClient:
        """Their AGR's client for our CRO, as their service hands it out."""
        client: ShapeshifterAgrCroClient = service.cro_client(participant.domain)
        return client

    def stop(self) -> None:
        for service in self.services:
            service.stop()
            for executor in (service.inbound_executor, service.outbound_executor):
                executor.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def shapeshifter_agr(shapeshifter: TheirSide) -> Iterator[TheirAggregators]:
    """Their AGR services beside `shapeshifter`'s; stopped before it (and `network`)."""
    aggregators = TheirAggregators(shapeshifter)
    try:
        yield aggregators
    finally:
        aggregators.stop()
