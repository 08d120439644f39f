"""The `uftp-adapter` command line.

Each command is a function `cmd_xxx(args) -> int` (the exit status) and each group of commands
has one `add_xxx(subparsers)` function that declares its arguments and binds them to the
function with `set_defaults(func=...)`. `COMMANDS` is the one place that lists the groups; a new
command adds its `add_` function there.

User mistakes (`ConfigError`, `KeyFileError`) and a store that cannot be opened
(`StoreOpenError`) end as one line on stderr and exit status 2, never as a traceback: the
message already names the file (or database) and what to fix.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import re
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import rotation
from .config import ConfigError, is_internet_domain
from .console import EXIT_REFUSED, EXIT_USAGE, PROG, UsageError, add_sending_options
from .errors import AdminError
from .event_loop import EVENT_LOOPS, UnknownEventLoop, loop_factory, run
from .keys import (
    KeyFileError,
    KeyFileExists,
    dns_txt_record,
    generate,
    load_private,
    public_path,
    write_private,
)
from .ops.logs import FORMATS, configure
from .ops.version import version
from .store.base import StoreOpenError
from .uftp.envelope import PublicKeys, parse_cs1
from .uftp.errors import UftpError
from .uftp.messages import Role

if TYPE_CHECKING:
    from .config import BusSettings

    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------


def add_keys_commands(subparsers: _SubParsers) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="create, show and rotate signing keys",
        description="Create, show and rotate signing keys.",
    )
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="create DIR/NAME.key (mode 0600) and DIR/NAME.pub; print the public cs1 string",
        description="Create a new key pair. Refuses to overwrite an existing NAME.key.",
    )
    gen.add_argument("name", metavar="NAME", help="file name without extension, e.g. dso")
    gen.add_argument("--dir", type=Path, default=Path("keys"), help="folder (default: keys)")
    gen.set_defaults(func=cmd_keys_generate)

    show = sub.add_parser(
        "show",
        help="print the public cs1 string and the DNS TXT record of DIR/NAME.key",
        description="Print the public cs1 string and the zone-file line that publishes it.",
    )
    show.add_argument("name", metavar="NAME", help="file name without extension, e.g. dso")
    show.add_argument("--domain", required=True, help="the participant's domain")
    show.add_argument(
        "--role", required=True, type=_role, help="the participant's role: AGR, CRO or DSO"
    )
    show.add_argument("--dir", type=Path, default=Path("keys"), help="folder (default: keys)")
    show.add_argument(
        "--previous",
        metavar="NAME",
        help="while rotating: also publish the old key DIR/NAME (.key or .pub)",
    )
    show.set_defaults(func=cmd_keys_show)

    rotate = sub.add_parser(
        "rotate",
        help="create the next key DIR/NAME.next.key; print the TXT record with both keys",
        description="Start a key rotation: create the next key beside NAME.key and print the "
        "TXT record that publishes the current and the next key. The participant keeps "
        "signing with NAME.key until `keys activate NAME` (or [participant] "
        "activate_next_key_at).",
    )
    activate = sub.add_parser(
        "activate",
        help="sign with the next key from now on; print the TXT record with both keys",
        description="Make NAME.next.key the current key (the old one becomes "
        "NAME.previous.key). A running participant signs with it after its next look at the "
        "file (at most once a second). Keep both "
        "keys published until messages signed with the old one are no longer in flight.",
    )
    for command, func in ((rotate, cmd_keys_rotate), (activate, cmd_keys_activate)):
        command.add_argument("name", metavar="NAME", help="file name without extension, e.g. cro")
        command.add_argument("--domain", required=True, help="the participant's domain")
        command.add_argument(
            "--role", required=True, type=_role, help="the participant's role: AGR, CRO or DSO"
        )
        command.add_argument(
            "--dir", type=Path, default=Path("keys"), help="folder (default: keys)"
        )
        command.set_defaults(func=func)


def cmd_keys_generate(args: argparse.Namespace) -> int:
    path = _key_path(args.dir, args.name)
    keys = generate()
    try:
        pub = write_private(path, keys)
    except KeyFileExists as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"wrote {path} (mode 0600, keep it secret) and {pub}", file=sys.stderr)
    print(keys.public.to_cs1())
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    domain = _domain_argument(args.domain)
    published = [_public_keys_of(args.dir, args.name)]
    if args.previous:
        published.append(_public_keys_of(args.dir, args.previous))
    print(published[0].to_cs1())
    print(dns_txt_record(domain, args.role, published))
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    domain = _domain_argument(args.domain)
    path = _key_path(args.dir, args.name)
    try:
        current, upcoming = rotation.rotate(path)
    except KeyFileExists as exc:
        print(
            f"{PROG}: error: {exc} (a rotation is under way: `keys activate` it)", file=sys.stderr
        )
        return EXIT_REFUSED
    print(f"wrote {rotation.next_path(path)}; still signing with {path}", file=sys.stderr)
    print(upcoming.to_cs1())
    print(dns_txt_record(domain, args.role, [current, upcoming]))
    return 0


def cmd_keys_activate(args: argparse.Namespace) -> int:
    domain = _domain_argument(args.domain)
    path = _key_path(args.dir, args.name)
    if not rotation.next_path(path).exists():
        print(
            f"{PROG}: error: {rotation.next_path(path)}: no next key; start with "
            f"`uftp-adapter keys rotate {args.name}`",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    current, previous = rotation.activate(path)
    print(
        f"{path} now holds the new key (the old one: {rotation.previous_path(path)}); keep both "
        "published until messages signed with the old one are no longer in flight",
        file=sys.stderr,
    )
    print(current.to_cs1())
    print(dns_txt_record(domain, args.role, [current, previous]))
    return 0


def _domain_argument(text: str) -> str:
    domain = text.strip().rstrip(".")
    if not is_internet_domain(domain):
        raise UsageError(
            f"--domain: expected a lowercase domain such as dso.example.com: {domain!r}"
        )
    return domain


def _public_keys_of(folder: Path, name: str) -> PublicKeys:
    """The public keys of NAME: from its private key if present, else from NAME.pub (an old
    key whose private half is gone can still be published during rotation)."""
    path = _key_path(folder, name)
    pub = public_path(path)
    if path.exists() or not pub.exists():
        return load_private(path).public
    try:
        words = pub.read_text("utf-8").split()
        if len(words) != 1:
            raise ValueError(f"expected one cs1 string, found {len(words)}")
        return parse_cs1(words[0])
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KeyFileError(f"{pub}: {exc}") from None


def _key_path(folder: Path, name: str) -> Path:
    if not _KEY_NAME.fullmatch(name) or name.endswith((".key", ".pub")):
        raise UsageError(
            f"NAME: expected a plain name such as 'dso' (letters, digits, '.', '_', '-'; "
            f"no folder, no extension), got {name!r}"
        )
    return folder / f"{name}.key"


def _role(text: str) -> Role:
    try:
        return Role(text.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AGR, CRO or DSO, got {text!r}") from None


# --------------------------------------------------------------------------------------------
# serve, send, demo
# --------------------------------------------------------------------------------------------


def add_participant_commands(subparsers: _SubParsers) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the participant's endpoint until SIGINT/SIGTERM",
        description="Run the endpoint; on SIGINT/SIGTERM in-flight handlers finish, POSTs "
        "on the wire get 5 s to return, and pending deliveries stay in the store for the "
        "next start.",
    )
    serve.add_argument("--config", type=Path, required=True, help="the participant's TOML file")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serve with N processes on the one port (Linux; needs a PostgreSQL store, which "
        "they share; a second serve on the port is still refused)",
    )
    serve.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="asyncio",
        help="the event loop to run on: asyncio's own (the default) or uvloop, which spends "
        "less CPU per message (install the uvloop extra)",
    )
    serve.set_defaults(func=cmd_serve)

    send = subparsers.add_parser(
        "send",
        help="send one message file and print its response",
        description="Send the UFTP message in MESSAGE_FILE as a new request and wait for the "
        "response: its MessageID, ConversationID, TimeStamp, SenderDomain and RecipientDomain "
        "are replaced (each send starts a new conversation), the rest is sent as written. "
        "Exit status: 0 Accepted, 1 Rejected, 2 not delivered or no answer. Listens on the "
        "configured address meanwhile, to receive the response.",
    )
    send.add_argument("--config", type=Path, required=True, help="the participant's TOML file")
    send.add_argument("--to", required=True, metavar="DOMAIN", help="the recipient's domain")
    add_sending_options(send)
    send.add_argument("message_file", type=Path, metavar="MESSAGE_FILE")
    send.set_defaults(func=cmd_send)

    demo = subparsers.add_parser(
        "demo",
        help="start the sample CRO and DSO on loopback and publish a portfolio",
        description="Generate the sample keys on first run, start config/cro.toml and "
        "config/dso.toml in this process, and show a DSOPortfolioUpdate and its response.",
    )
    demo.add_argument(
        "--config-dir", type=Path, default=Path("config"), help="folder of dso.toml and cro.toml"
    )
    demo.add_argument(
        "--flex",
        action="store_true",
        help="instead: a flex day of a CRO, a DSO and an AGR (portfolio, FlexRequest, "
        "FlexOffer, FlexOrder, FlexSettlement), with keys and stores of their own in a "
        "temporary folder; needs no config",
    )
    demo.set_defaults(func=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    from .config import PostgresStoreSettings, load_config
    from .listen import workers_supported
    from .run import serve

    try:
        loop_factory(args.event_loop)  # installed? said before anything starts
    except UnknownEventLoop as exc:
        raise UsageError(f"--event-loop {args.event_loop}: {exc}") from None
    config = load_config(args.config)
    if args.workers > 1:
        if not isinstance(config.participant.store, PostgresStoreSettings):
            raise UsageError(
                f"--workers {args.workers}: {args.config} has a SQLite store, which admits one "
                'process; several share a PostgreSQL store (store = "postgresql://...")'
            )
        if not workers_supported():
            raise UsageError("--workers needs Linux (SO_REUSEPORT and abstract sockets)")
        from .workers import serve_workers

        return serve_workers(config, args.workers, args.event_loop)
    run(serve(config, log_format=args.log_format), args.event_loop)
    return 0


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes, 1 or more, got {text!r}")
    return value


def cmd_send(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run import read_message_file, request_once
    from .uftp.messages import PayloadRequest

    config = load_config(args.config)
    # A request opens a conversation (metadata-attributes.md: a ConversationID is generated
    # for the first message of one and copied only to replies), so a file sent again, or a
    # template, must not carry an old conversation into a new one.
    message = dataclasses.replace(
        read_message_file(args.message_file), conversation_id=str(uuid.uuid4())
    )
    if not isinstance(message, PayloadRequest):
        raise UsageError(
            f"{args.message_file}: a {message.xml_name} is not a request: it answers one"
        )
    outcome = asyncio.run(
        request_once(config, message, args.to, timeout=args.timeout, keep_trying=args.keep_trying)
    )
    return outcome.status


#: What `demo` reads from --config-dir: the samples in the repository's config/ folder.
DEMO_FILES = ("dso.toml", "cro.toml", "portfolio.csv")


def cmd_demo(args: argparse.Namespace) -> int:
    from .run import demo

    if args.flex:
        from .flex.demo import flex_day

        return asyncio.run(flex_day())

    for name in DEMO_FILES:
        path = args.config_dir / name
        if not path.is_file():
            raise ConfigError(
                str(path),
                None,
                "no such file; the demo runs the sample configs in the config/ folder of a "
                "clone of the repository: run it from the clone, or pass --config-dir FOLDER "
                f"(a folder holding {', '.join(DEMO_FILES)}; `{PROG} init FOLDER --samples` "
                "writes them)",
            )
    return asyncio.run(demo(args.config_dir))


# --------------------------------------------------------------------------------------------
# cro
# --------------------------------------------------------------------------------------------


def add_cro(subparsers: _SubParsers) -> None:
    cro = subparsers.add_parser(
        "cro",
        help="inspect the Common Reference register (CRO)",
        description="Inspect the register of a CRO: its congestion points and connections.",
    )
    sub = cro.add_subparsers(dest="cro_command", required=True, metavar="COMMAND")
    show = sub.add_parser(
        "show",
        help="print the congestion points: owning DSO, periods, flags, connection counts",
        description="Print the register's congestion points, by DSO (connection counts only: "
        "connection identifiers are personal data). Reads the CRO's store; safe while it runs.",
    )
    show.add_argument("--config", type=Path, required=True, help="the CRO's TOML file")
    show.add_argument("--dso", metavar="DOMAIN", help="only this DSO's congestion points")
    show.add_argument(
        "--date",
        metavar="D",
        type=_as_of,
        help="the register as it stood at the end of day D (YYYY-MM-DD, in the market's "
        "time zone) or at an ISO instant; default: now",
    )
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.add_argument("--history", action="store_true", help="also list the accepted updates")
    show.set_defaults(func=cmd_cro_show)


def cmd_cro_show(args: argparse.Namespace) -> int:
    from .config import SqliteStoreSettings, load_config
    from .cro.show import end_of_day, read_report, render_json, render_text

    config = load_config(args.config)
    if config.participant.role is not Role.CRO:
        raise UsageError(f"{args.config} configures a {config.participant.role}, not a CRO")
    store = config.participant.store
    if isinstance(store, SqliteStoreSettings) and not store.path.exists():
        raise UsageError(f"no store at {store.path}: has the CRO run yet?")
    as_of = args.date
    if isinstance(as_of, date) and not isinstance(as_of, datetime):
        as_of = end_of_day(as_of, config.cro.zone)
    elif isinstance(as_of, datetime) and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=config.cro.zone)

    async def show() -> str:
        from .ops.admin_client import find_daemon

        daemon = await find_daemon(config)
        if daemon is not None:  # the running CRO reads its own store
            async with daemon:
                return await daemon.cro_show(
                    dso=args.dso, as_of=as_of, history=args.history, form=args.format
                )
        report = await read_report(config, dso=args.dso, as_of=as_of, history=args.history)
        return render_json(report) if args.format == "json" else render_text(report)

    print(asyncio.run(show()), end="")
    return 0


def _as_of(text: str) -> date | datetime:
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date YYYY-MM-DD or an ISO instant, got {text!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# dso
# --------------------------------------------------------------------------------------------


def add_dso_commands(subparsers: _SubParsers) -> None:
    dso = subparsers.add_parser(
        "dso",
        help="publish the DSO's portfolio to the CRO and query it; request and order flexibility",
        description="Publish congestion points with their connections to the CRO and ask "
        "which aggregators represent them (contract-phase.md); request flexibility from "
        "aggregators, see their offers and order one (flex-request.md to flex-order.md); see "
        "the D-Prognoses and Metering they sent. "
        "Exit status: 0 Accepted, 1 Rejected, 2 a mistake in a file or argument, not "
        "delivered or no answer.",
    )
    sub = dso.add_subparsers(dest="dso_command", required=True, metavar="COMMAND")
    publish = sub.add_parser(
        "publish",
        help="send PORTFOLIO_FILE as a DSOPortfolioUpdate and print the response",
        description="Read and check PORTFOLIO_FILE (.csv or .json, one row per connection; "
        "the columns are described in adapter/dso/portfolio.py), send it as a "
        "DSOPortfolioUpdate and print Accepted or Rejected with the reasons. A mistake in the "
        "file, including a broken period rule, is reported as FILE:LINE: FIELD: PROBLEM, "
        "every one on a line of its own, and nothing is sent.",
    )
    publish.add_argument("portfolio_file", type=Path, metavar="PORTFOLIO_FILE")
    _add_dso_options(publish)
    publish.set_defaults(func=cmd_dso_publish)

    query = sub.add_parser(
        "query",
        help="print the connections of a congestion point on a date, with their AGR-Domain",
        description="Send a DSOPortfolioQuery and print the CRO's answer: the connections of "
        "CONGESTION_POINT on day D and the aggregator representing each, where there is one.",
    )
    query.add_argument("congestion_point", metavar="CONGESTION_POINT", help="its EntityAddress")
    query.add_argument(
        "--date", required=True, type=_day, metavar="D", help="the Period, YYYY-MM-DD"
    )
    query.add_argument("--format", choices=("text", "json"), default="text")
    _add_dso_options(query)
    query.set_defaults(func=cmd_dso_query)

    from .flex.commands import add_dso_flex_commands

    add_dso_flex_commands(sub)


def _add_dso_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the DSO's TOML file")
    parser.add_argument(
        "--to", metavar="CRO_DOMAIN", help="the CRO's domain (default: the one CRO in --config)"
    )
    parser.add_argument(
        "--time-zone",
        type=_time_zone,
        metavar="ZONE",
        help="the market's TimeZone (default: Europe/Amsterdam, as the CRO's default)",
    )
    add_sending_options(parser)


def cmd_dso_publish(args: argparse.Namespace) -> int:
    from .config import load_config
    from .dso.portfolio import DEFAULT_TIME_ZONE, PortfolioFileError, load_portfolio
    from .dso.publish import cro_target, describe_publish
    from .run import request_once

    try:
        update = load_portfolio(args.portfolio_file, time_zone=args.time_zone or DEFAULT_TIME_ZONE)
    except PortfolioFileError as exc:
        count = len(exc.problems)
        # Several: each on a line of its own that starts with file:line, as editors read them.
        heading = f"{exc.path}: {count} problems, nothing sent:\n" if count > 1 else ""
        print(f"{PROG}: error: {heading}{exc}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    try:
        to = cro_target(config, args.to)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    connections = sum(len(point.connections) for point in update.congestion_points)
    print(
        f"DSOPortfolioUpdate to {to}: {len(update.congestion_points)} congestion points, "
        f"{connections} connections",
        flush=True,
    )
    outcome = asyncio.run(
        request_once(
            config,
            update,
            to,
            timeout=args.timeout,
            keep_trying=args.keep_trying,
            describe=describe_publish,
        )
    )
    return outcome.status


def cmd_dso_query(args: argparse.Namespace) -> int:
    from .config import load_config
    from .dso.portfolio import DEFAULT_TIME_ZONE, is_entity_address
    from .dso.publish import cro_target, describe_query, query_json
    from .run import request_once
    from .uftp.messages import DSOPortfolioQuery

    if not is_entity_address(args.congestion_point):
        raise UsageError(
            "CONGESTION_POINT: expected an EntityAddress ('ea1.YYYY-MM.domain:name' or "
            f"'ean.' and 12 to 34 digits), got {args.congestion_point!r}"
        )
    config = load_config(args.config)
    try:
        to = cro_target(config, args.to)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    message = DSOPortfolioQuery(
        time_zone=args.time_zone or DEFAULT_TIME_ZONE,
        period=args.date,
        entity_address=args.congestion_point,
    )
    describe = query_json if args.format == "json" else describe_query
    outcome = asyncio.run(
        request_once(
            config,
            message,
            to,
            timeout=args.timeout,
            keep_trying=args.keep_trying,
            describe=describe,
        )
    )
    return outcome.status


def _day(text: str) -> date:
    try:
        if len(text) != 10:  # date.fromisoformat also takes 20260301 and 2026-W09-7
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _time_zone(text: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected an IANA time zone such as 'Europe/Amsterdam', got {text!r}"
        ) from None
    return text


# --------------------------------------------------------------------------------------------
# operating it: outbox, inbox, status, store, init (in adapter.ops.commands)
# --------------------------------------------------------------------------------------------


def add_agr(subparsers: _SubParsers) -> None:
    from .flex.commands import add_agr_commands

    add_agr_commands(subparsers)


def add_operator_commands(subparsers: _SubParsers) -> None:
    from .ops import commands

    commands.add_outbox(subparsers)
    commands.add_inbox(subparsers)
    commands.add_status(subparsers)
    commands.add_store(subparsers)
    commands.add_init(subparsers)


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# bus
# --------------------------------------------------------------------------------------------


def add_bus_commands(subparsers: _SubParsers) -> None:
    bus = subparsers.add_parser(
        "bus",
        help="watch the message bus, put a command on it",
        description="The broker of a participant's [bus] table, RabbitMQ or NATS JetStream "
        "(see README, 'Connecting your systems'). Exit 2 when the broker cannot be reached.",
    )
    sub = bus.add_subparsers(dest="bus_command", required=True, metavar="COMMAND")
    tail = sub.add_parser(
        "tail",
        help="print events as they pass",
        description="Print each event (routing key, type, id, UFTP attributes) until Ctrl-C, "
        "from a queue of its own bound to the events exchange (RabbitMQ) or an ephemeral "
        "consumer of the events stream (NATS); it leaves nothing behind.",
    )
    tail.add_argument("--config", type=Path, required=True, help="the participant's TOML file")
    tail.add_argument("--routing-key", default="#", help="topic pattern, e.g. 'in.*' (default: #)")
    tail.add_argument("--count", type=int, help="stop after this many events")
    tail.set_defaults(func=cmd_bus_tail)

    send = sub.add_parser(
        "send",
        help="put a UFTP message on the bus as a command",
        description="Publish FILE (UFTP XML, or its JSON form for a .json file; metadata may "
        "be left out) as a command for DOMAIN; print its id once the broker confirmed it.",
    )
    send.add_argument("--config", type=Path, required=True, help="the participant's TOML file")
    send.add_argument("--to", required=True, metavar="DOMAIN", help="the recipient's domain")
    send.add_argument("--role", type=_role, help="the recipient's role, where ambiguous")
    send.add_argument("--id", dest="command_id", help="the command id (default: a new UUID)")
    send.add_argument("--answers", metavar="MESSAGE_ID", help="the request a response answers")
    send.add_argument("file", type=Path, metavar="FILE")
    send.set_defaults(func=cmd_bus_send)


def _bus_settings(path: Path) -> BusSettings:
    from .config import load_config

    config = load_config(path)
    if config.bus is None:
        raise UsageError(f"{path} has no [bus] table")
    return config.bus


def cmd_bus_tail(args: argparse.Namespace) -> int:
    from .bus.operator import tail
    from .bus.port import BusError

    settings = _bus_settings(args.config)
    try:
        asyncio.run(tail(settings, pattern=args.routing_key, count=args.count))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except BusError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_bus_send(args: argparse.Namespace) -> int:
    from .bus.operator import send
    from .bus.port import BusError

    settings = _bus_settings(args.config)
    try:
        body = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"FILE: {args.file}: {exc.strerror or exc}") from None
    try:
        command_id = asyncio.run(
            send(
                settings,
                body,
                json=args.file.suffix.lower() == ".json",
                to=args.to,
                role=args.role.value if args.role else None,
                command_id=args.command_id,
                answers=args.answers,
            )
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except BusError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(command_id)
    return 0


#: Every command group, in the order `--help` lists them. Add new groups here.
COMMANDS: tuple[Callable[[_SubParsers], None], ...] = (
    add_keys_commands,
    add_participant_commands,
    add_cro,
    add_dso_commands,
    add_agr,
    add_bus_commands,
    add_operator_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Shapeshifter/UFTP participant for the DSO, AGR and CRO roles."
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="log lines as text (with the time in `serve`) or one JSON object per line, for a "
        "log shipper (default: text)",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    # A service's log lines carry the time; a command's few lines for the terminal do not.
    configure(level, args.log_format, prog=PROG, timestamps=args.command == "serve")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, KeyFileError, StoreOpenError, UftpError, AdminError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # e.g. the listen address is in use
        where = f"{exc.filename}: " if exc.filename else ""  # which file, where there is one
        print(f"{PROG}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
