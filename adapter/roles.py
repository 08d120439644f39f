"""The ready-made handlers each role brings, added to a participant's router.

A CRO answers portfolio updates and queries from its register. A DSO and an AGR bring the
flex handlers of their side (`adapter.flex.handlers`): each checks what the other sends
against the conversation's state and records it for the operator.
"""

from __future__ import annotations

from .config import Config
from .participant import Participant
from .uftp.messages import Role


def role_router(participant: Participant, config: Config) -> None:
    """Register the handlers of `participant`'s role on its router."""
    if participant.role is Role.CRO:
        from .cro.handlers import cro_router_for
        from .store import register_for

        journal = participant.journal  # with a bus, register changes become events too
        register = register_for(
            participant.store, events=journal.register_change if journal is not None else None
        )
        participant.router.include(cro_router_for(config, register))
    else:
        from .flex.desk import flex_router_for

        router = flex_router_for(participant, config)
        if router is not None:
            participant.router.include(router)
