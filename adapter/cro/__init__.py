"""The Common Reference Operator: the register of congestion points and connections that DSOs
and aggregators publish to (spec: contract-phase.md), and the handlers that maintain it.

`register` holds the rules as pure functions; `handlers.cro_router` wires them to the
participant and to a `PortfolioRegister` (adapter.store.register) that keeps the state.
"""

from adapter.cro.handlers import authorized_peers, cro_router, cro_router_for
from adapter.cro.register import Policy

__all__ = ["Policy", "authorized_peers", "cro_router", "cro_router_for"]
