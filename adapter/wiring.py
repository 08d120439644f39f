"""A participant as its configuration describes it: its role's ready-made handlers, the
handler modules of its [handlers] table and its [bus] bridge, wired together.

Apart from `run.py` (which runs participants) so that the service of `adapter.ops`, which
`run.serve` starts, can build its participant without importing `run` back.
"""

from __future__ import annotations

import importlib
import logging

from .config import Config, ConfigError
from .participant import Participant
from .roles import role_router
from .router import Router

__all__ = ["HandlerModuleError", "load_handlers", "participant_for"]

log = logging.getLogger(__name__)


def participant_for(config: Config) -> Participant:
    """The participant a configuration describes, with the ready-made handlers of its role
    and the handler modules of its [handlers] table."""
    bus = None
    if config.bus is not None:
        from .bus.bridge import BusBridge

        bus = BusBridge.from_config(config)
    participant = Participant.from_config(config, bus=bus)
    role_router(participant, config)
    for ref in config.handlers.modules:
        load_handlers(participant, ref)
    return participant


class HandlerModuleError(ConfigError):
    """A [handlers] module that cannot be loaded, or names no router."""


def load_handlers(participant: Participant, ref: str) -> None:
    """Add the handlers `ref` ("package.module:attribute") names to `participant`'s router.

    The attribute is a `Router` (its handlers are included) or a function taking the
    participant (it registers what it wants, e.g. handlers that send messages of their own).
    A handler for a type that already has one is an error, not an override."""
    module_name, _, attribute = ref.partition(":")
    source = f"[handlers] modules: {ref}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerModuleError(source, None, f"cannot import {module_name}: {exc}") from None
    target = getattr(module, attribute, None)
    try:
        if isinstance(target, Router):
            participant.router.include(target)
        elif callable(target):
            target(participant)
        else:
            raise HandlerModuleError(
                source, None, f"{attribute} is not a Router nor a function of the participant"
            )
    except ValueError as exc:  # a second handler for one message type
        raise HandlerModuleError(source, None, str(exc)) from None
    log.info("loaded handlers from %s", ref)
