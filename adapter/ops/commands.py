"""The operator's command groups of `uftp-adapter`: `outbox`, `inbox`, `status`, `store` and
`init`, declared and run as `adapter.cli` declares and runs its own (`add_xxx` binds each
command to a `cmd_xxx(args) -> int`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from adapter.config import Config, SqliteStoreSettings, load_config
from adapter.console import EXIT_REFUSED, EXIT_USAGE, PROG, UsageError
from adapter.printable import printable
from adapter.store import redact_dsn
from adapter.store.admin import DEFAULT_LIMIT, MessageQuery, Requeued
from adapter.store.base import InboundStatus, OutboundStatus

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_inbox", "add_init", "add_outbox", "add_status", "add_store"]


def _now() -> datetime:
    return datetime.now(UTC)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the participant's TOML file")


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _filters(parser: argparse.ArgumentParser, statuses: tuple[str, ...], peer: str) -> None:
    parser.add_argument("--peer", metavar="DOMAIN", help=f"only messages {peer} DOMAIN")
    parser.add_argument(
        "--type",
        dest="message_type",
        metavar="TYPE",
        help="only this message type, e.g. DSOPortfolioUpdate",
    )
    parser.add_argument("--status", choices=statuses, help="only messages in this status")
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help="only messages since WHEN: a duration back from now (90s, 30m, 12h, 7d), a day "
        "YYYY-MM-DD (from midnight UTC) or an ISO instant",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"at most N, newest first (default {DEFAULT_LIMIT})",
        metavar="N",
    )
    _format_option(parser)


def _query(args: argparse.Namespace, **fixed: str) -> MessageQuery:
    from adapter.ops.inspect import parse_since

    try:
        since = None if args.since is None else parse_since(args.since, _now())
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    if args.limit < 1:
        raise UsageError(f"--limit: expected a number of messages, 1 or more, got {args.limit}")
    return MessageQuery(
        peer=fixed.get("peer", args.peer),
        message_type=args.message_type,
        status=args.status,
        since=since,
        message_id=fixed.get("message_id"),
        limit=args.limit,
    )


def _store_name(config: Config) -> str:
    store = config.participant.store
    return str(store.path) if isinstance(store, SqliteStoreSettings) else redact_dsn(store.dsn)


# --------------------------------------------------------------------------------------------
# outbox
# --------------------------------------------------------------------------------------------


def add_outbox(subparsers: _SubParsers) -> None:
    outbox = subparsers.add_parser(
        "outbox",
        help="list, show, retry and cancel the messages this participant sends",
        description="The outbox: every message this participant sent or is sending, with its "
        "delivery. Reading is safe while `serve` runs; retry and cancel write to the store, "
        "and a running serve follows them (see README, Operating it).",
    )
    sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="COMMAND")
    listing = sub.add_parser(
        "list",
        help="the messages, newest first: status, attempts, last error",
        description="List outbound messages, newest first.",
    )
    _config_option(listing)
    _filters(listing, tuple(s.value for s in OutboundStatus), "to")
    listing.set_defaults(func=cmd_outbox_list)

    show = sub.add_parser(
        "show",
        help="one message: its delivery and every attempt",
        description="Show one outbound message, its delivery attempts and, with --xml, the "
        "message as sent.",
    )
    show.add_argument("message_id", metavar="MESSAGE_ID")
    _config_option(show)
    show.add_argument("--xml", action="store_true", help="also print the message as sent")
    _format_option(show)
    show.set_defaults(func=cmd_outbox_show)

    retry = sub.add_parser(
        "retry",
        help="send failed, expired or cancelled messages again",
        description="Put messages whose delivery ended without success (failed, expired, "
        "cancelled) back in the queue: the next attempt is now, and they are retried until a "
        "new deadline ([delivery] deadline_seconds from now). The same signed message is "
        "sent; a running serve of a SQLite store sends it within its outbox scan interval, "
        "otherwise the next start does. Exit status 1 if one of them could not be requeued.",
    )
    retry.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    _config_option(retry)
    retry.set_defaults(func=cmd_outbox_retry)

    cancel = sub.add_parser(
        "cancel",
        help="withdraw pending messages: they are not sent again",
        description="Withdraw messages still pending: no further attempt is made, by this "
        "command's store or a running serve (which re-reads a message's status before each "
        "retry). An attempt already on the wire finishes. Exit status 1 if one of them had "
        "already ended or is unknown.",
    )
    cancel.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    _config_option(cancel)
    cancel.set_defaults(func=cmd_outbox_cancel)


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from adapter.ops.inspect import reading, render_outbound_list

    config = load_config(args.config)
    query = _query(args)

    async def run() -> str:
        async with reading(config) as admin:
            return render_outbound_list(await admin.outbound(query), args.format)

    print(asyncio.run(run()), end="")
    return 0


def cmd_outbox_show(args: argparse.Namespace) -> int:
    from adapter.ops.inspect import OutboundDetail, inner_xml, reading, render_outbound

    config = load_config(args.config)

    async def run() -> OutboundDetail | None:
        async with reading(config) as admin:
            found = await admin.outbound(MessageQuery(message_id=args.message_id, limit=1))
            if not found:
                return None
            xml = None
            if args.xml:
                sealed = await admin.outbound_envelope(args.message_id)
                xml = None if sealed is None else inner_xml(sealed)
            return OutboundDetail(found[0], await admin.attempts(args.message_id), xml)

    detail = asyncio.run(run())
    if detail is None:
        print(f"{PROG}: no outbound message {printable(args.message_id)}", file=sys.stderr)
        return EXIT_REFUSED
    print(render_outbound(detail, args.format), end="")
    return 0


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    from adapter.ops.inspect import writing

    config = load_config(args.config)
    now = _now()
    deadline = now + timedelta(seconds=config.delivery.deadline_seconds)
    lines: list[str] = []
    refused = False

    async def run() -> None:
        nonlocal refused
        async with writing(config) as (_, admin):
            for message_id in args.message_ids:
                shown = printable(message_id)
                try:
                    done = await admin.requeue(message_id, now=now, deadline=deadline)
                except LookupError:
                    lines.append(f"{shown}: no such outbound message")
                    refused = True
                    continue
                if done is Requeued.REQUEUED:
                    until = deadline.isoformat(timespec="seconds")
                    lines.append(f"{shown}: requeued, retried until {until}")
                    continue
                refused = True
                lines.append(
                    f"{shown}: "
                    + {
                        Requeued.PENDING: "still pending: it is being retried already",
                        Requeued.DELIVERED: "delivered: not sent again",
                        Requeued.NO_ENVELOPE: "its envelope was removed by retention: nothing "
                        "left to send",
                    }[done]
                )

    asyncio.run(run())
    print("\n".join(lines))
    return EXIT_REFUSED if refused else 0


def cmd_outbox_cancel(args: argparse.Namespace) -> int:
    from adapter.ops.inspect import writing

    config = load_config(args.config)
    lines: list[str] = []
    refused = False

    async def run() -> None:
        nonlocal refused
        async with writing(config) as (store, _):
            for message_id in args.message_ids:
                shown = printable(message_id)
                try:
                    cancelled = await store.cancel_outbound(message_id)
                except LookupError:
                    lines.append(f"{shown}: no such outbound message")
                    refused = True
                    continue
                if cancelled:
                    lines.append(f"{shown}: cancelled, it will not be sent again")
                    continue
                refused = True
                record = await store.get_outbound(message_id)
                status = record.status.value if record else "ended"
                lines.append(f"{shown}: not pending ({status}): left as it is")

    asyncio.run(run())
    print("\n".join(lines))
    return EXIT_REFUSED if refused else 0


# --------------------------------------------------------------------------------------------
# inbox
# --------------------------------------------------------------------------------------------


def add_inbox(subparsers: _SubParsers) -> None:
    inbox = subparsers.add_parser(
        "inbox",
        help="list and show the messages this participant received",
        description="The inbox: every message received and stored (acknowledged with HTTP "
        "200), and whether it is handled. Safe while `serve` runs.",
    )
    sub = inbox.add_subparsers(dest="inbox_command", required=True, metavar="COMMAND")
    listing = sub.add_parser(
        "list", help="the messages, newest first", description="List inbound messages."
    )
    _config_option(listing)
    _filters(listing, tuple(s.value for s in InboundStatus), "from")
    listing.set_defaults(func=cmd_inbox_list)

    show = sub.add_parser(
        "show",
        help="one message, and with --xml its content",
        description="Show one inbound message and, with --xml, the message as received.",
    )
    show.add_argument("message_id", metavar="MESSAGE_ID")
    _config_option(show)
    show.add_argument(
        "--peer", metavar="DOMAIN", help="its sender, when senders used the same MessageID"
    )
    show.add_argument("--xml", action="store_true", help="also print the message as received")
    _format_option(show)
    show.set_defaults(func=cmd_inbox_show)


def cmd_inbox_list(args: argparse.Namespace) -> int:
    from adapter.ops.inspect import reading, render_inbound_list

    config = load_config(args.config)
    query = _query(args)

    async def run() -> str:
        async with reading(config) as admin:
            return render_inbound_list(await admin.inbound(query), args.format)

    print(asyncio.run(run()), end="")
    return 0


def cmd_inbox_show(args: argparse.Namespace) -> int:
    from adapter.ops.inspect import InboundDetail, inner_xml, reading, render_inbound

    config = load_config(args.config)
    query = MessageQuery(peer=args.peer, message_id=args.message_id, limit=2)

    async def run() -> list[InboundDetail]:
        async with reading(config) as admin:
            found = await admin.inbound(query)
            if len(found) != 1 or not args.xml:
                return [InboundDetail(row) for row in found]
            sealed = await admin.inbound_envelope(found[0].sender_domain, args.message_id)
            return [InboundDetail(found[0], None if sealed is None else inner_xml(sealed))]

    details = asyncio.run(run())
    shown = printable(args.message_id)
    if not details:
        print(f"{PROG}: no inbound message {shown}", file=sys.stderr)
        return EXIT_REFUSED
    if len(details) > 1:
        senders = ", ".join(printable(d.message.sender_domain) for d in details)
        raise UsageError(f"{shown} came from several senders ({senders}): name one with --peer")
    print(render_inbound(details[0], args.format), end="")
    return 0


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def add_status(subparsers: _SubParsers) -> None:
    status = subparsers.add_parser(
        "status",
        help="queue depths, oldest pending, failures in the last hour, peers' last success",
        description="What the store says of this participant: messages by status, the oldest "
        "still waiting, failed deliveries in the last hour, and each peer's last message "
        "received and last successful delivery. Reads every message's row: an operator's "
        "look, not a probe (the metrics are). Safe while `serve` runs.",
    )
    _config_option(status)
    _format_option(status)
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from adapter.ops.inspect import reading, render_status

    config = load_config(args.config)
    now = _now()

    async def run() -> str:
        async with reading(config) as admin:
            status = await admin.status(now - timedelta(hours=1))
        return render_status(status, config, now, args.format, store=_store_name(config))

    print(asyncio.run(run()), end="")
    return 0


# --------------------------------------------------------------------------------------------
# store: prune, backup
# --------------------------------------------------------------------------------------------


def add_store(subparsers: _SubParsers) -> None:
    store = subparsers.add_parser(
        "store",
        help="prune old messages, back up a SQLite store",
        description="Maintain the participant's store. Both are safe while `serve` runs.",
    )
    sub = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    prune = sub.add_parser(
        "prune",
        help="remove envelopes and messages older than [retention] says, now",
        description="Remove the envelopes of finished messages older than [retention] "
        "envelopes_days (90) and finished messages older than messages_days (400), as a "
        "running serve does at its start and every hour. A message still in flight is never "
        "removed; the Common Reference register is not touched.",
    )
    _config_option(prune)
    prune.set_defaults(func=cmd_store_prune)

    backup = sub.add_parser(
        "backup",
        help="copy a SQLite store, consistent, while it runs, to a new FILE",
        description="Copy the SQLite store to FILE (new, mode 0600) with SQLite's online "
        "backup: the store as it stood at one instant, while serve goes on. For a "
        "PostgreSQL store use pg_dump.",
    )
    _config_option(backup)
    backup.add_argument("file", type=Path, metavar="FILE")
    backup.set_defaults(func=cmd_store_backup)


def cmd_store_prune(args: argparse.Namespace) -> int:
    from adapter.ops import retention
    from adapter.ops.inspect import writing

    config = load_config(args.config)

    async def run() -> str:
        async with writing(config) as (_, admin):
            pruned = await retention.prune(admin, config.retention, _now())
        return retention.describe(pruned, config.retention)

    print(asyncio.run(run()))
    return 0


def cmd_store_backup(args: argparse.Namespace) -> int:
    from adapter.ops.backup import BackupError, backup_sqlite

    config = load_config(args.config)
    store = config.participant.store
    if not isinstance(store, SqliteStoreSettings):
        raise UsageError(
            "the store is a PostgreSQL database: back it up with PostgreSQL's own tools, e.g. "
            "pg_dump --format=custom --schema=SCHEMA (the store URL's schema, default uftp) "
            "DATABASE > FILE"
        )
    try:
        size = backup_sqlite(store.path, args.file)
    except BackupError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"backed up {store.path} to {args.file} ({size} bytes, mode 0600)")
    return 0


# --------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------


def add_init(subparsers: _SubParsers) -> None:
    init = subparsers.add_parser(
        "init",
        help="write a new participant's commented config and its key, or the demo's samples",
        description="Write DIR/NAME.toml, a configuration for a DSO or a CRO with every "
        "setting commented with its default, and its signing key DIR/keys/NAME.key (mode "
        "0600) with NAME.pub; NAME is the role in lower case. With --samples instead, copy "
        "the demo's sample configs and portfolio into DIR (then: uftp-adapter demo "
        "--config-dir DIR). Never overwrites a file.",
    )
    init.add_argument("folder", type=Path, metavar="DIR")
    init.add_argument("--role", type=_init_role, help="DSO, CRO or AGR")
    init.add_argument("--domain", help="the participant's domain, e.g. dso.example.com")
    init.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="where it listens for its peers (default 127.0.0.1:8080)",
    )
    init.add_argument("--samples", action="store_true", help="copy the demo's samples instead")
    init.set_defaults(func=cmd_init)


def _init_role(text: str) -> str:
    if text.upper() not in ("DSO", "CRO", "AGR"):
        raise argparse.ArgumentTypeError(f"expected DSO, CRO or AGR, got {text!r}")
    return text.upper()


def cmd_init(args: argparse.Namespace) -> int:
    from adapter.config import is_internet_domain
    from adapter.ops.init import InitError, copy_samples, init_participant
    from adapter.uftp.messages import Role

    try:
        if args.samples:
            if args.role or args.domain:
                raise UsageError("--samples copies the demo's files: no --role or --domain")
            for path in copy_samples(args.folder):
                print(f"wrote {path}")
            print(f"run the demo: {PROG} demo --config-dir {args.folder}")
            return 0
        if not args.role or not args.domain:
            raise UsageError("give --role (DSO or CRO) and --domain, or --samples")
        domain = args.domain.strip().rstrip(".")
        if not is_internet_domain(domain):
            raise UsageError(
                f"--domain: expected a lowercase domain such as dso.example.com: {domain!r}"
            )
        done = init_participant(args.folder, Role(args.role), domain, args.listen)
    except InitError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"wrote {done.config}")
    print(f"wrote {done.key} (mode 0600, keep it secret) and {done.public_key}")
    print(f"the public key, for your peers' operators: {done.cs1}")
    print(f"next: add your peers to {done.config}, then {PROG} serve --config {done.config}")
    return 0
