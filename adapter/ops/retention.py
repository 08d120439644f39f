"""Retention: what the store no longer keeps ([retention]; see `config.RetentionSettings`).

The cut-offs are counted back from now: envelopes of finished messages older than
`envelopes_days`, finished messages older than `messages_days`. The store's operator port
(`adapter.store.admin.StoreAdmin.prune`) removes them in short transactions and never touches
a message still in flight, nor the Common Reference register.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from adapter.config import RetentionSettings
from adapter.store.admin import Pruned, StoreAdmin

__all__ = ["cutoffs", "describe", "prune"]

log = logging.getLogger(__name__)


def cutoffs(settings: RetentionSettings, now: datetime) -> tuple[datetime, datetime]:
    """(envelopes before, messages before): what is older goes."""
    return (
        now - timedelta(days=settings.envelopes_days),
        now - timedelta(days=settings.messages_days),
    )


async def prune(admin: StoreAdmin, settings: RetentionSettings, now: datetime) -> Pruned:
    envelopes_before, messages_before = cutoffs(settings, now)
    pruned = await admin.prune(envelopes_before=envelopes_before, messages_before=messages_before)
    log.log(
        logging.INFO if pruned.total else logging.DEBUG,
        "retention: %s",
        describe(pruned, settings),
    )
    return pruned


def describe(pruned: Pruned, settings: RetentionSettings) -> str:
    envelopes = pruned.inbound_envelopes + pruned.outbound_envelopes
    messages = pruned.inbound_messages + pruned.outbound_messages
    if not envelopes and not messages:
        return (
            f"nothing to remove (envelopes are kept {settings.envelopes_days} days, messages "
            f"{settings.messages_days})"
        )
    return (
        f"removed the envelopes of {envelopes} messages older than {settings.envelopes_days} "
        f"days ({pruned.inbound_envelopes} received, {pruned.outbound_envelopes} sent) and "
        f"{messages} messages older than {settings.messages_days} days "
        f"({pruned.inbound_messages} received, {pruned.outbound_messages} sent)"
    )
