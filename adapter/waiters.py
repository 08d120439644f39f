"""Requests awaiting their responses, wherever the response arrives.

UFTP answers a request with a separate POST from the peer, correlated by the reference to the
request's MessageID, or by ConversationID where the response carries none (a 3.x
TestMessageResponse) (message-transport-mechanism.md, "Awaiting reply"). With one process per
store the response arrives where its request waits: `Waiters` keeps the futures in memory.

Several processes sharing one store behind one address (``serve --workers``, or hosts behind
a load balancer) do not choose where the peer's POST lands. `SharedWaiters` then tells the
others through the store's `Notifier`: the process that handles a response nobody awaits
here sends its key - the sender and MessageID under which it is stored, and what it answers -
and the process whose request it answers reads it from the store and resolves its future
there. The notification carries no message: what resolves a request is what the store holds,
whose signature was verified before it was stored. Likewise a request whose delivery another
process ended for good (it took the message over) is failed with the outcome the store
recorded.

A request only takes the answer it can have: one from the peer it was sent to, of the
response type of its request. Anything else referring to it is logged and left to its
handler.

The participant sees a `Matcher` only (expect, resolve, fail) and takes the one its store's
`Coordinator` calls for (`matcher_for`): this is the part a deployment of several processes
replaces.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, Protocol

from .client import DeliveryResult, Outcome
from .errors import DeliveryFailed
from .store.base import OutboundStatus, Store
from .store.coordination import Coordinator, Notifier
from .uftp import codec, envelope
from .uftp.messages import RESPONSE_TYPES, PayloadMessage, PayloadResponse

__all__ = [
    "LoadFailure",
    "LoadResponse",
    "Matcher",
    "SharedWaiters",
    "Waiters",
    "matcher_for",
]

log = logging.getLogger(__name__)

#: The response stored under (sender domain, MessageID), or None if there is none.
LoadResponse = Callable[[str, str], Awaitable[PayloadResponse | None]]
#: Why the delivery of the request with this MessageID failed for good, or None if it did not.
LoadFailure = Callable[[str], Awaitable[Exception | None]]


class Matcher(Protocol):
    """Matches our requests with the responses that answer them, and ends their wait."""

    def expect(self, request: PayloadMessage, responder: str) -> asyncio.Future[PayloadResponse]:
        """The future of `request`'s response from `responder`; call before sending it, and
        `forget` once done with it."""
        ...

    def forget(self, request: PayloadMessage) -> None: ...

    def resolves_in_memory(self, response: PayloadResponse, sender_domain: str) -> bool:
        """Whether resolving `response` from `sender_domain` is work of this process's memory
        alone, which a crash would end with nothing left to do: no other process may await
        it. Then the response needs no unfinished state in the store to survive a crash."""
        ...

    async def resolve(self, response: PayloadResponse, sender_domain: str) -> None:
        """`response` from `sender_domain` arrived (stored, verified): hand it to the request
        awaiting it, wherever that is."""
        ...

    def fail_here(self, request_id: str, error: Exception) -> bool:
        """End the wait of request `request_id` with `error` if it awaits in this process;
        whether it does."""
        ...

    async def fail(self, request_id: str, error: Exception) -> None:
        """The delivery of request `request_id` failed for good: its wait ends with `error`,
        wherever it awaits."""
        ...

    def awaiting(self) -> list[tuple[str, str]]:
        """(MessageID, ConversationID) of each request awaiting its response here."""
        ...

    async def close(self) -> None: ...


def matcher_for(coordinator: Coordinator, store: Store) -> Matcher:
    """The matcher of a participant on `store`: in memory for one process, or across the
    processes that share the store when its coordinator has a `Notifier` (PostgreSQL's
    LISTEN/NOTIFY)."""
    notifier = coordinator.notifier
    if notifier is None:
        return Waiters()
    return SharedWaiters(notifier, partial(_load_response, store), partial(_load_failure, store))


class Waiters:
    """The requests of this process awaiting their responses, in memory: the `Matcher` of a
    participant that is alone on its store."""

    def __init__(self) -> None:
        #: our request's MessageID -> the future its response resolves
        self._futures: dict[str, asyncio.Future[PayloadResponse]] = {}
        #: our request's MessageID -> (who must answer it, with which message type)
        self._expected: dict[str, tuple[str, type[PayloadResponse]]] = {}
        #: ConversationID -> our request's MessageID, for responses without a reference
        self._conversations: dict[str, str] = {}

    def expect(self, request: PayloadMessage, responder: str) -> asyncio.Future[PayloadResponse]:
        """The future of `request`'s response from `responder`; call before sending it, and
        `forget` once done with it."""
        future: asyncio.Future[PayloadResponse] = asyncio.get_running_loop().create_future()
        self._futures[request.message_id] = future
        self._expected[request.message_id] = (responder, RESPONSE_TYPES[type(request)])
        self._conversations[request.conversation_id] = request.message_id
        return future

    def forget(self, request: PayloadMessage) -> None:
        self._futures.pop(request.message_id, None)
        self._expected.pop(request.message_id, None)
        if self._conversations.get(request.conversation_id) == request.message_id:
            del self._conversations[request.conversation_id]

    def awaiting(self) -> list[tuple[str, str]]:
        """(MessageID, ConversationID) of each request awaiting its response here."""
        by_request = {message_id: cid for cid, message_id in self._conversations.items()}
        return [(message_id, by_request.get(message_id, "")) for message_id in self._futures]

    async def resolve(self, response: PayloadResponse, sender_domain: str) -> None:
        """`response` from `sender_domain` arrived (stored, verified): hand it to the request
        awaiting it."""
        self.resolve_here(response, sender_domain)

    async def fail(self, request_id: str, error: Exception) -> None:
        """The delivery of request `request_id` failed for good: its wait ends with `error`."""
        self.fail_here(request_id, error)

    def cancel_all(self) -> None:
        for future in self._futures.values():
            if not future.done():
                future.cancel()

    async def close(self) -> None:
        self.cancel_all()

    def resolves_in_memory(self, response: PayloadResponse, sender_domain: str) -> bool:
        """Always: with one process per store, every request awaits here, and one that does
        not await `response` (sent with `send`, or gone with a crash) has nothing to tell."""
        return True

    def awaits(self, response: PayloadResponse, sender_domain: str) -> bool:
        """Whether a request of this process awaits `response` from `sender_domain`: it is
        the answer that request can have, not yet had."""
        key = self.key_of(response)
        return (
            key is not None
            and not self._futures[key].done()
            and self._answers(key, response, sender_domain)
        )

    def _answers(self, key: str, response: PayloadResponse, sender_domain: str) -> bool:
        """Whether `response` is the answer our request `key` can have: from the peer it was
        sent to, of the response type of the request."""
        responder, kind = self._expected[key]
        return sender_domain == responder and type(response) is kind

    def key_of(self, response: PayloadResponse) -> str | None:
        """The MessageID of our request that `response` answers, if one awaits it here."""
        key = response.reference_message_id or self._conversations.get(response.conversation_id)
        return key if key in self._futures else None

    def resolve_here(self, response: PayloadResponse, sender_domain: str) -> bool:
        """Resolve the request of this process that `response` answers, if it is the answer
        that request can have: from the peer it was sent to, of the response type of its
        request. True if a request here awaits it (answered now or not)."""
        key = self.key_of(response)
        if key is None:
            return False
        future = self._futures[key]
        if future.done():
            return True
        if not self._answers(key, response, sender_domain):
            responder, kind = self._expected[key]
            log.warning(
                "a %s from %s refers to a request of ours that awaits a %s from %s: not its answer",
                response.xml_name,
                sender_domain,
                kind.__name__,
                responder,
            )
            log.debug("%s refers to our %s", response.message_id, key)
            return True
        future.set_result(response)
        return True

    def fail_here(self, request_id: str, error: Exception) -> bool:
        future = self._futures.get(request_id)
        if future is None:
            return False
        if not future.done():
            future.set_exception(error)
        return True


class SharedWaiters(Waiters):
    """Waiters of several processes sharing one store, told of each other's news through
    the store's `Notifier` (PostgreSQL's LISTEN/NOTIFY); what resolves a request is read from
    the store: the `Matcher` of a participant on a shared store."""

    def __init__(
        self, notifier: Notifier, load_response: LoadResponse, load_failure: LoadFailure
    ) -> None:
        super().__init__()
        self._notifier = notifier
        self._load_response = load_response
        self._load_failure = load_failure
        self._tasks: set[asyncio.Task[None]] = set()
        notifier.subscribe(self._on_news, self._on_gap)

    async def resolve(self, response: PayloadResponse, sender_domain: str) -> None:
        """Resolve here, or tell the other processes: `StorageError` if that fails (our
        fault: the handling of the response is tried again)."""
        if self.resolve_here(response, sender_domain):
            return
        await self._notifier.notify(
            _news(
                response=response.message_id,
                sender=sender_domain,
                reference=response.reference_message_id or None,
                conversation=response.conversation_id,
            )
        )

    def resolves_in_memory(self, response: PayloadResponse, sender_domain: str) -> bool:
        """Only when a request of this process awaits it: otherwise another process may, and
        must hear of it even if this one dies before telling it (`resolve`)."""
        return self.awaits(response, sender_domain)

    async def fail(self, request_id: str, error: Exception) -> None:
        if not self.fail_here(request_id, error):
            await self._notifier.notify(_news(failed=request_id))

    async def close(self) -> None:
        await super().close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_news(self, payload: str) -> None:
        try:
            news = json.loads(payload)
        except ValueError:
            log.warning("ignoring a notification that is not ours: %.80r", payload)
            return
        if not isinstance(news, dict):
            return
        failed = news.get("failed")
        if isinstance(failed, str):
            if failed in self._futures:
                self._spawn(self._fail_from_store(failed))
            return
        response, sender = news.get("response"), news.get("sender")
        if not isinstance(response, str) or not isinstance(sender, str):
            return
        reference, conversation = news.get("reference"), news.get("conversation")
        key = reference if isinstance(reference, str) and reference else None
        if key is None and isinstance(conversation, str):
            key = self._conversations.get(conversation)
        if key in self._futures:
            self._spawn(self._resolve_from_store(sender, response))

    def _on_gap(self) -> None:
        """Notifications were lost: a request that another process failed meanwhile learns it
        from the store now. (A response that arrived at another process meanwhile is not
        found again: its request ends with a timeout.)"""
        if self._futures:
            log.warning(
                "notifications were lost: %d requests may miss a response that arrived at "
                "another process meanwhile",
                len(self._futures),
            )
        for request_id in list(self._futures):
            self._spawn(self._fail_from_store(request_id))

    async def _resolve_from_store(self, sender: str, message_id: str) -> None:
        response = await self._load_response(sender, message_id)
        if response is None:
            log.warning("a notified response of %s is not in the store", sender)
            return
        self.resolve_here(response, sender)

    async def _fail_from_store(self, request_id: str) -> None:
        error = await self._load_failure(request_id)
        if error is not None:
            self.fail_here(request_id, error)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "reading a notified response or failure from the store failed",
                exc_info=task.exception(),
            )


def _news(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


async def _load_response(
    store: Store, sender_domain: str, message_id: str
) -> PayloadResponse | None:
    """The response stored under (sender, MessageID): it was verified and validated before
    it was stored."""
    record = await store.get_inbound(sender_domain, message_id)
    if record is None:
        return None
    signed = envelope.parse_envelope(record.envelope)
    message = codec.decode(signed.sealed[envelope.SIGNATURE_BYTES :])
    return message if isinstance(message, PayloadResponse) else None


async def _load_failure(store: Store, message_id: str) -> Exception | None:
    """Why our message's delivery failed for good, as the store recorded it (another
    process may have delivered it), or None if it did not."""
    record = await store.get_outbound(message_id)
    if record is None or record.status not in (OutboundStatus.FAILED, OutboundStatus.EXPIRED):
        return None
    attempts = await store.attempts(message_id)
    last = attempts[-1] if attempts else None
    outcome = Outcome.PERMANENT if record.status is OutboundStatus.FAILED else Outcome.TEMPORARY
    result = DeliveryResult(
        outcome,
        last.http_status if last else None,
        last.detail if last else (record.last_error or ""),
    )
    return DeliveryFailed(message_id, record.status, result)
