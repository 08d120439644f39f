"""Message type -> async handler, registered with a decorator.

    router = Router()

    @router.on(DSOPortfolioUpdate)
    async def portfolio_update(message: DSOPortfolioUpdate, ctx: HandlerContext):
        ...
        return DSOPortfolioUpdateResponse()   # the participant fills the metadata

A handler returns the response message (or None for messages that take none, such as
responses), or raises `Rejection` to answer Result=Rejected with its reasons. It runs after the
sender already had its HTTP 200, so it may take its time; the participant bounds how many run
at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .uftp.messages import PayloadMessage, PayloadRequest, PayloadResponse, Role

M = TypeVar("M", bound=PayloadMessage)
R = TypeVar("R", bound=PayloadResponse)


class Sender(Protocol):
    """What a handler may do besides answering: send messages of its own, and await the
    responses to its requests. A `Participant` is one; a handler needs no more of it."""

    async def send(self, message: M, to: str, *, role: Role | None = None) -> M:
        """Queue `message` durably for `to`; it, with its metadata filled in."""
        ...

    async def request(
        self,
        message: PayloadRequest[R],
        to: str,
        *,
        role: Role | None = None,
        timeout: float = 60.0,
    ) -> R:
        """Send `message` and wait for the response that answers it, of the type its request
        names."""
        ...


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler knows about the message besides its content."""

    #: From the verified SignedMessage: who really sent it.
    sender_domain: str
    sender_role: Role
    message_id: str
    conversation_id: str
    #: The SignedMessage as received, and the inner XML it carried (for audit or archiving).
    envelope: bytes
    inner_xml: bytes
    received_at: datetime
    #: For handlers that send further messages of their own (the participant that received
    #: this one).
    participant: Sender

    async def send(self, message: M, to: str, *, role: Role | None = None) -> M:
        """Queue a message of the handler's own for `to` (`Participant.send`)."""
        return await self.participant.send(message, to, role=role)

    async def request(
        self,
        message: PayloadRequest[R],
        to: str,
        *,
        role: Role | None = None,
        timeout: float = 60.0,
    ) -> R:
        """Send a request of the handler's own and await its response (`Participant.request`)."""
        return await self.participant.request(message, to, role=role, timeout=timeout)


Handler = Callable[[Any, HandlerContext], Awaitable[PayloadResponse | None]]


class Router:
    """Handlers by message type. One handler per type: a second registration is an error,
    not a silent override, because which one runs would otherwise depend on import order."""

    def __init__(self) -> None:
        self._handlers: dict[type[PayloadMessage], Handler] = {}

    def on(
        self, message_type: type[M]
    ) -> Callable[
        [Callable[[M, HandlerContext], Awaitable[PayloadResponse | None]]],
        Callable[[M, HandlerContext], Awaitable[PayloadResponse | None]],
    ]:
        """Register the decorated coroutine function as the handler of `message_type`."""

        def register(
            handler: Callable[[M, HandlerContext], Awaitable[PayloadResponse | None]],
        ) -> Callable[[M, HandlerContext], Awaitable[PayloadResponse | None]]:
            if message_type in self._handlers:
                raise ValueError(f"a handler for {message_type.__name__} is already registered")
            self._handlers[message_type] = handler
            return handler

        return register

    def handler_for(self, message_type: type[PayloadMessage]) -> Handler | None:
        return self._handlers.get(message_type)

    def include(self, other: Router) -> None:
        """Add another router's handlers (e.g. a role's ready-made handlers)."""
        for message_type, handler in other._handlers.items():
            self.on(message_type)(handler)

    def __contains__(self, message_type: type[PayloadMessage]) -> bool:
        return message_type in self._handlers
