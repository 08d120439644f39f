"""uftp-adapter: an async Shapeshifter/UFTP participant for DSOs and CROs.

Everything a program needs is importable from here; the modules behind it may move between
versions. A CRO that answers portfolio updates with its own code:

    from adapter import DSOPortfolioUpdate, DSOPortfolioUpdateResponse, HandlerContext
    from adapter import Participant, Rejection, Router, load_config

    router = Router()

    @router.on(DSOPortfolioUpdate)
    async def on_update(message: DSOPortfolioUpdate, ctx: HandlerContext):
        if not message.congestion_points:
            raise Rejection("Invalid Message")      # -> Result=Rejected with this reason
        return DSOPortfolioUpdateResponse()         # metadata, reference, Version filled in

    async with Participant.from_config(load_config("config/cro.toml"), router=router):
        ...

A DSO that publishes its portfolio file and awaits the answer:

    async with participant_for(load_config("config/dso.toml")) as dso:
        response = await publish(dso, load_portfolio("config/portfolio.csv"), to="cro.example")

What is here:

- Running a participant: `Participant` (`send`, `request`, `withdraw`), `Router` and the
  `HandlerContext` a handler gets (with `send`/`request` of its own, the `Sender` protocol),
  `load_config` and `Config`, `participant_for` (a participant with its role's ready-made
  handlers), and the `Directory` of peers (`StaticDirectory`, `Peer`).
- Its settings, one frozen object per concern with one default each (as the configuration
  file's tables are read into them): `ListenAddress`, `Delivery` (retries, deadlines,
  timeouts, handler slots), `Limits` (what a peer may take: body size, rate, connections,
  timeouts, the TimeStamp window) and `TlsContexts`; a value out of range is a
  `SettingsError`.
- A DSO's portfolio: `load_portfolio`, `publish`, `query`.
- The messages: every UFTP message type of the contract phase and TestMessage, their parts,
  and `Role`, `Result`, `RedispatchBy`; `Reason` spells the spec's RejectionReasons.
- The errors: every one derives from `AdapterError` (the tree is in `adapter.errors`).
  The peer's mistakes are `TransportError`s that carry their HTTP status (`InvalidXml`,
  `InvalidSignature`, ...); a handler raises `Rejection` to answer Rejected; our own message
  that cannot be sent is `InvalidOutbound`; sending ends in `DeliveryFailed`,
  `ResponseTimeout` or `UnknownPeer`; the deployment's mistakes are `ConfigError`,
  `SettingsError`, `TlsFileError`, `KeyFileError`, `StoreOpenError` and `CannotListen`;
  the store failing at work is `StorageError`, which is never a peer's fault.
- `adapter.testing` (imported by name): message builders, a loopback network of real
  participants, and a client that posts what a peer would.

Names are imported when first used, so that `import adapter` (and the `uftp-adapter` command,
which imports this package first) does not load the HTTP stack, the stores or the optional
dependencies until a program asks for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .assemble import TlsContexts
    from .config import Config, load_config
    from .directory import Directory, Peer, StaticDirectory
    from .dso.portfolio import PortfolioFileError, PortfolioRuleError, load_portfolio
    from .dso.publish import publish, query
    from .errors import (
        AdapterError,
        CannotListen,
        ConfigError,
        DeliveryFailed,
        IncompleteMessage,
        InvalidOutbound,
        InvalidSignature,
        InvalidXml,
        KeyFileError,
        KeyLookupFailed,
        Reason,
        Rejection,
        ResponseTimeout,
        SettingsError,
        StorageError,
        StoreOpenError,
        TlsFileError,
        TransportError,
        UftpError,
        UnknownPeer,
    )
    from .participant import Participant
    from .router import HandlerContext, Router, Sender
    from .settings import Delivery, Limits, ListenAddress
    from .uftp.messages import (
        MESSAGE_TYPES,
        RESPONSE_TYPES,
        AGRPortfolioQuery,
        AGRPortfolioQueryCongestionPoint,
        AGRPortfolioQueryConnection,
        AGRPortfolioQueryDSOPortfolio,
        AGRPortfolioQueryDSOView,
        AGRPortfolioQueryResponse,
        AGRPortfolioUpdate,
        AGRPortfolioUpdateConnection,
        AGRPortfolioUpdateResponse,
        DSOPortfolioQuery,
        DSOPortfolioQueryCongestionPoint,
        DSOPortfolioQueryConnection,
        DSOPortfolioQueryResponse,
        DSOPortfolioUpdate,
        DSOPortfolioUpdateCongestionPoint,
        DSOPortfolioUpdateConnection,
        DSOPortfolioUpdateResponse,
        PayloadMessage,
        PayloadRequest,
        PayloadResponse,
        RedispatchBy,
        Result,
        Role,
        TestMessage,
        TestMessageResponse,
    )
    from .wiring import participant_for

__all__ = [
    "MESSAGE_TYPES",
    "RESPONSE_TYPES",
    "AGRPortfolioQuery",
    "AGRPortfolioQueryCongestionPoint",
    "AGRPortfolioQueryConnection",
    "AGRPortfolioQueryDSOPortfolio",
    "AGRPortfolioQueryDSOView",
    "AGRPortfolioQueryResponse",
    "AGRPortfolioUpdate",
    "AGRPortfolioUpdateConnection",
    "AGRPortfolioUpdateResponse",
    "AdapterError",
    "CannotListen",
    "Config",
    "ConfigError",
    "DSOPortfolioQuery",
    "DSOPortfolioQueryCongestionPoint",
    "DSOPortfolioQueryConnection",
    "DSOPortfolioQueryResponse",
    "DSOPortfolioUpdate",
    "DSOPortfolioUpdateCongestionPoint",
    "DSOPortfolioUpdateConnection",
    "DSOPortfolioUpdateResponse",
    "Delivery",
    "DeliveryFailed",
    "Directory",
    "HandlerContext",
    "IncompleteMessage",
    "InvalidOutbound",
    "InvalidSignature",
    "InvalidXml",
    "KeyFileError",
    "KeyLookupFailed",
    "Limits",
    "ListenAddress",
    "Participant",
    "PayloadMessage",
    "PayloadRequest",
    "PayloadResponse",
    "Peer",
    "PortfolioFileError",
    "PortfolioRuleError",
    "Reason",
    "RedispatchBy",
    "Rejection",
    "ResponseTimeout",
    "Result",
    "Role",
    "Router",
    "Sender",
    "SettingsError",
    "StaticDirectory",
    "StorageError",
    "StoreOpenError",
    "TestMessage",
    "TestMessageResponse",
    "TlsContexts",
    "TlsFileError",
    "TransportError",
    "UftpError",
    "UnknownPeer",
    "__version__",
    "load_config",
    "load_portfolio",
    "participant_for",
    "publish",
    "query",
]

#: Where each public name lives; imported on first access (PEP 562).
_HOMES: dict[str, tuple[str, ...]] = {
    "adapter.assemble": ("TlsContexts",),
    "adapter.config": ("Config", "load_config"),
    "adapter.directory": ("Directory", "Peer", "StaticDirectory"),
    "adapter.dso.portfolio": ("PortfolioFileError", "PortfolioRuleError", "load_portfolio"),
    "adapter.dso.publish": ("publish", "query"),
    "adapter.errors": (
        "AdapterError",
        "CannotListen",
        "ConfigError",
        "DeliveryFailed",
        "IncompleteMessage",
        "InvalidOutbound",
        "InvalidSignature",
        "InvalidXml",
        "KeyFileError",
        "KeyLookupFailed",
        "Reason",
        "Rejection",
        "ResponseTimeout",
        "SettingsError",
        "StorageError",
        "StoreOpenError",
        "TlsFileError",
        "TransportError",
        "UftpError",
        "UnknownPeer",
    ),
    "adapter.participant": ("Participant",),
    "adapter.router": ("HandlerContext", "Router", "Sender"),
    "adapter.settings": ("Delivery", "Limits", "ListenAddress"),
    "adapter.wiring": ("participant_for",),
    "adapter.uftp.messages": (
        "MESSAGE_TYPES",
        "RESPONSE_TYPES",
        "AGRPortfolioQuery",
        "AGRPortfolioQueryCongestionPoint",
        "AGRPortfolioQueryConnection",
        "AGRPortfolioQueryDSOPortfolio",
        "AGRPortfolioQueryDSOView",
        "AGRPortfolioQueryResponse",
        "AGRPortfolioUpdate",
        "AGRPortfolioUpdateConnection",
        "AGRPortfolioUpdateResponse",
        "DSOPortfolioQuery",
        "DSOPortfolioQueryCongestionPoint",
        "DSOPortfolioQueryConnection",
        "DSOPortfolioQueryResponse",
        "DSOPortfolioUpdate",
        "DSOPortfolioUpdateCongestionPoint",
        "DSOPortfolioUpdateConnection",
        "DSOPortfolioUpdateResponse",
        "PayloadMessage",
        "PayloadRequest",
        "PayloadResponse",
        "RedispatchBy",
        "Result",
        "Role",
        "TestMessage",
        "TestMessageResponse",
    ),
}
_LAZY = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, an attribute like any other
    return value


def __dir__() -> list[str]:
    """The public face (`help(adapter)` lists it), and the module's own attributes."""
    return sorted(set(globals()) | set(__all__))
