"""The CRO's handlers: the four contract-phase requests, answered from the register.

    register = register_for(store)
    participant = Participant.from_config(config, router=cro_router_for(config, register))

Each handler returns the response with its business fields only (the participant fills the
metadata) or raises `Rejection`; the rules are in `adapter.cro.register`, the state behind
`PortfolioRegister`. Logging: what happened and how much at info, never a connection's
EntityAddress (it identifies a household: personal data) - those only at debug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from functools import partial

from adapter.config import Config, CroSettings
from adapter.cro.register import (
    Policy,
    admission,
    agr_query_response,
    check_agr_update,
    check_dso_update,
    dso_query_response,
    listing,
    prepare_agr_update,
    prepare_dso_update,
)
from adapter.router import HandlerContext, Router
from adapter.store.register import Applied, PortfolioRegister, UpdateMeta
from adapter.uftp.errors import Reason, Rejection
from adapter.uftp.messages import (
    AGRPortfolioQuery,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateResponse,
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    Role,
)

__all__ = ["authorized_peers", "cro_router", "cro_router_for"]

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def authorized_peers(config: Config, role: Role) -> frozenset[str]:
    """The domains pre-registered in `role` ([[peers]], not barred): who may publish in
    closed mode (contract-phase.md: "participants will need to be pre-configured")."""
    return frozenset(peer.domain for peer in config.peers if peer.role is role and not peer.barred)


def cro_router_for(config: Config, register: PortfolioRegister) -> Router:
    """`cro_router` with the policy and the pre-registered peers of a configuration."""
    return cro_router(
        register,
        config.cro,
        known_dsos=authorized_peers(config, Role.DSO),
        known_agrs=authorized_peers(config, Role.AGR),
    )


def cro_router(
    register: PortfolioRegister,
    settings: CroSettings,
    *,
    known_dsos: Collection[str] = (),
    known_agrs: Collection[str] = (),
    clock: Callable[[], datetime] = _utc_now,
) -> Router:
    """Handlers for DSOPortfolioUpdate, DSOPortfolioQuery, AGRPortfolioUpdate and
    AGRPortfolioQuery on `register`.

    `known_dsos` / `known_agrs` only matter in closed mode: then only they may publish and
    query. `clock` stamps when an update is applied, for the register's `as_of` reads.
    """
    policy = Policy.from_settings(settings, known_dsos=known_dsos, known_agrs=known_agrs)
    router = Router()

    @router.on(DSOPortfolioUpdate)
    async def dso_portfolio_update(
        message: DSOPortfolioUpdate, ctx: HandlerContext
    ) -> DSOPortfolioUpdateResponse:
        proposal = prepare_dso_update(message, ctx.sender_domain, policy)
        meta = UpdateMeta(
            ctx.sender_domain,
            message.message_id,
            proposal.time_stamp,
            clock(),
            message.conversation_id,
        )
        outcome = await register.apply_dso_update(
            meta, proposal.points, partial(check_dso_update, proposal)
        )
        # Identifiers (MessageIDs, EntityAddresses) only at debug level: personal data.
        log.info(
            "%s DSOPortfolioUpdate from %s: %d congestion points, %d connections",
            "applied" if outcome is Applied.APPLIED else "already applied",
            ctx.sender_domain,
            len(proposal.points),
            proposal.connection_count,
        )
        log.debug("the DSOPortfolioUpdate from %s was %s", ctx.sender_domain, message.message_id)
        if proposal.clipped and outcome is Applied.APPLIED:
            log.info(
                "DSOPortfolioUpdate from %s: %d connection periods broke the period rules "
                "of dso-portfolio-update.md and were clipped to their congestion point's "
                "(period_violation = clip)",
                ctx.sender_domain,
                len(proposal.clipped),
            )
            log.debug("%s", listing(f"clipped in {message.message_id}", proposal.clipped))
        return DSOPortfolioUpdateResponse()

    @router.on(DSOPortfolioQuery)
    async def dso_portfolio_query(
        message: DSOPortfolioQuery, ctx: HandlerContext
    ) -> DSOPortfolioQueryResponse:
        reasons = admission(ctx.sender_domain, message.time_zone, policy.known_dsos, policy)
        # Only the DSO's own points (message-validation.md, "Invalid CongestionPoint"); an
        # unknown point gets the same answer, so a DSO cannot probe for other DSOs' points.
        if await register.owner(message.entity_address) != ctx.sender_domain:
            reasons.append(Reason.INVALID_CONGESTION_POINT)
        if reasons:
            raise Rejection(*reasons)
        connections = await register.dso_connections(message.entity_address, message.period)
        log.info(
            "DSOPortfolioQuery from %s for %s: %d connections",
            ctx.sender_domain,
            message.period,
            len(connections),
        )
        log.debug("the DSOPortfolioQuery from %s was %s", ctx.sender_domain, message.message_id)
        return dso_query_response(message, connections)

    @router.on(AGRPortfolioUpdate)
    async def agr_portfolio_update(
        message: AGRPortfolioUpdate, ctx: HandlerContext
    ) -> AGRPortfolioUpdateResponse:
        proposal = prepare_agr_update(message, ctx.sender_domain, policy)
        meta = UpdateMeta(
            ctx.sender_domain,
            message.message_id,
            proposal.time_stamp,
            clock(),
            message.conversation_id,
        )
        outcome = await register.apply_agr_update(
            meta, proposal.connections, partial(check_agr_update, proposal)
        )
        log.info(
            "%s AGRPortfolioUpdate from %s: %d connection periods",
            "applied" if outcome is Applied.APPLIED else "already applied",
            ctx.sender_domain,
            len(proposal.connections),
        )
        log.debug("the AGRPortfolioUpdate from %s was %s", ctx.sender_domain, message.message_id)
        return AGRPortfolioUpdateResponse()

    @router.on(AGRPortfolioQuery)
    async def agr_portfolio_query(
        message: AGRPortfolioQuery, ctx: HandlerContext
    ) -> AGRPortfolioQueryResponse:
        """Note: no rejection of this query is schema-valid (see `agr_query_response`); the
        participant sends it unvalidated and a strict peer answers HTTP 400."""
        reasons = admission(ctx.sender_domain, message.time_zone, policy.known_agrs, policy)
        if reasons:
            raise Rejection(*reasons)
        # Only the sender's own registrations are read: an aggregator never learns about
        # connections it did not register (privacy-and-security-by-design.md).
        allocations = await register.agr_connections(ctx.sender_domain, message.period)
        allocated = sum(1 for a in allocations if a.congestion_point is not None)
        log.info(
            "AGRPortfolioQuery from %s for %s: %d connections, %d in a congestion point",
            ctx.sender_domain,
            message.period,
            len(allocations),
            allocated,
        )
        log.debug("the AGRPortfolioQuery from %s was %s", ctx.sender_domain, message.message_id)
        if log.isEnabledFor(logging.DEBUG) and allocated < len(allocations):
            unallocated = [a.entity_address for a in allocations if a.congestion_point is None]
            log.debug("%s", listing(f"unallocated in {message.message_id}", unallocated))
        return agr_query_response(message, allocations)

    return router
