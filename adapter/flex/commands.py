"""The flex commands of `uftp-adapter`: the DSO's (`dso flex-request`, `dso offers`,
`dso order`, `dso prognoses`, `dso metering`) and the AGR's (`agr requests`, `agr offer`,
`agr offers`, `agr revoke`, `agr reservations`). FlexReservationUpdates, D-Prognoses and
Metering need no command of their own to be sent: `send` sends a message file, and the
flex handlers of the running participant record it when its answer arrives.

The listings read the store without taking it (a running `serve` may hold it). The commands
that send do so as `dso publish` does: through the running `serve` of their config (its admin
socket, `adapter.ops.admin`), which records the message in its flex book as it leaves;
without one, with a participant of their own for the one exchange, listening on the
configured address for the answer. The checks before sending (an offer still accepted, the
next Revision) read the book either way; the move of an offer to ordered as its order leaves
is made where the message is sent, atomically. Exit status: 0 Accepted, 1 Rejected or
refused here, 2 a mistake in a file or argument, not delivered or no answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from adapter.config import Config, load_config
from adapter.console import EXIT_REFUSED, PROG, UsageError, add_sending_options
from adapter.errors import DeliveryFailed, ResponseTimeout, UnknownPeer
from adapter.flex.desk import (
    FlexFileError,
    load_flex_request,
    load_offer,
    market_of,
    order_for,
    send_recorded,
)
from adapter.flex.handlers import model_of
from adapter.flex.state import Direction, Entry, Standing
from adapter.printable import printable
from adapter.store.flex import FlexBook
from adapter.uftp.errors import rejection_reasons
from adapter.uftp.messages import (
    DPrognosis,
    FlexOffer,
    FlexOfferRevocation,
    FlexRequest,
    FlexReservationUpdate,
    Metering,
    PayloadMessage,
    PayloadRequest,
    PayloadResponse,
    Result,
    Role,
)

if TYPE_CHECKING:
    from adapter.ops.admin_client import Daemon

    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_agr_commands", "add_dso_flex_commands"]

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_UNDELIVERED = 0, 1, 2

T = TypeVar("T")


def _common(parser: argparse.ArgumentParser, role: str, *, sends: bool) -> None:
    parser.add_argument("--config", type=Path, required=True, help=f"the {role}'s TOML file")
    if sends:
        add_sending_options(parser)
    else:
        parser.add_argument("--format", choices=("text", "json"), default="text")


# --- the DSO ---------------------------------------------------------------------------------


def add_dso_flex_commands(sub: _SubParsers) -> None:
    """`dso flex-request`, `dso offers`, `dso order` (in the `dso` group of cli.py)."""
    request = sub.add_parser(
        "flex-request",
        help="send REQUEST_FILE as a FlexRequest to an AGR and print its response",
        description="Read REQUEST_FILE (TOML, or JSON for .json: congestion_point, period, "
        "[[isps]] with start, duration, min_power, max_power, disposition; see README) and "
        "send it as a FlexRequest, in the market's ISP-Duration and TimeZone ([flex]). The "
        "Revision is one more than the last sent for the point and day, unless the file "
        "says. Prints the request's MessageID, which the AGR's offers name.",
    )
    request.add_argument("request_file", type=Path, metavar="REQUEST_FILE")
    request.add_argument("--to", metavar="AGR_DOMAIN", help="the AGR (default: the one AGR)")
    _common(request, "DSO", sends=True)
    request.set_defaults(func=cmd_dso_flex_request)

    _add_listing(sub, "dso offers")

    order = sub.add_parser(
        "order",
        help="order one option of a received FlexOffer and print the AGR's response",
        description="Send a FlexOrder for OFFER_ID: the option's ISPs and price copied "
        "unchanged (flex-order.md). Refused here, nothing sent, when the offer is not "
        "accepted, revoked, ordered already or expired.",
    )
    order.add_argument("offer_id", metavar="OFFER_ID", help="the FlexOffer's MessageID")
    order.add_argument("--option", metavar="REF", help="the OptionReference (needed if several)")
    order.add_argument(
        "--activation-factor",
        type=_factor,
        default=Decimal("1.00"),
        metavar="F",
        help="0.01 to 1.00, at least the option's MinActivationFactor (default 1.00)",
    )
    order.add_argument("--order-reference", metavar="TEXT", help="default: a new one")
    _common(order, "DSO", sends=True)
    order.set_defaults(func=cmd_dso_order)

    _add_listing(sub, "dso prognoses")

    _add_listing(sub, "dso metering")


def cmd_dso_flex_request(args: argparse.Namespace) -> int:
    config = _config(args.config, Role.DSO)
    to = args.to or _single_peer(config, Role.AGR)
    market = market_of(config)

    async def work(desk: _Desk) -> int:
        probe = _file(lambda: load_flex_request(args.request_file, market, revision=1))
        latest = await desk.book.latest_revision(
            Direction.SENT, to, probe.congestion_point, probe.period, excluding=""
        )
        message = _file(
            lambda: load_flex_request(args.request_file, market, revision=(latest or 0) + 1)
        )
        return await desk.exchange(message, to)

    return _run(config, args, work)


def cmd_dso_order(args: argparse.Namespace) -> int:
    config = _config(args.config, Role.DSO)

    async def work(desk: _Desk) -> int:
        entry = await desk.book.get(Direction.RECEIVED, args.offer_id)
        offer = model_of(entry, FlexOffer)
        if entry is None or offer is None:
            return _refused(f"no FlexOffer {args.offer_id} was received")
        shown = entry.shown_standing(datetime.now(UTC))
        if shown != Standing.ACCEPTED:
            return _refused(f"the FlexOffer {args.offer_id} is {shown}: it cannot be ordered")
        try:
            order = order_for(
                offer,
                option_reference=args.option,
                activation_factor=args.activation_factor,
                order_reference=args.order_reference or f"order-{uuid.uuid4().hex[:12]}",
            )
        except LookupError as exc:
            return _refused(str(exc))
        print(
            f"FlexOrder to {entry.peer_domain}: option {order.option_reference} of "
            f"{args.offer_id}, {order.price} {order.currency}, "
            f"activation {order.activation_factor}",
            flush=True,
        )
        settle = (entry, (Standing.ACCEPTED,), Standing.ORDERED)
        return await desk.exchange(order, entry.peer_domain, settle=settle)

    return _run(config, args, work)


# --- the AGR ---------------------------------------------------------------------------------


def add_agr_commands(subparsers: _SubParsers) -> None:
    agr = subparsers.add_parser(
        "agr",
        help="trade flexibility as an aggregator: requests received, offers, revocations",
        description="The aggregator's side of flex trading (flex-request.md to flex-order.md). "
        "`serve` receives FlexRequests, FlexOrders and FlexReservationUpdates and checks "
        "them; these commands show them and answer with FlexOffers. Exit status: 0 "
        "Accepted, 1 Rejected or refused here, 2 a mistake in a file or argument, not "
        "delivered or no answer.",
    )
    sub = agr.add_subparsers(dest="agr_command", required=True, metavar="COMMAND")
    _add_listing(sub, "agr requests")

    offer = sub.add_parser(
        "offer",
        help="answer a FlexRequest with the FlexOffer in OFFER_FILE; print the DSO's response",
        description="Read OFFER_FILE (TOML, or JSON for .json: currency, expiration, "
        "[[options]] with reference, price, min_activation_factor and [[options.isps]] with "
        "start, duration, power; see README) and send it as a FlexOffer for REQUEST_ID, to "
        "the DSO that sent it: its day and congestion point. Prints the offer's MessageID.",
    )
    offer.add_argument("request_id", metavar="REQUEST_ID", help="the FlexRequest's MessageID")
    offer.add_argument("offer_file", type=Path, metavar="OFFER_FILE")
    _common(offer, "AGR", sends=True)
    offer.set_defaults(func=cmd_agr_offer)

    _add_listing(sub, "agr offers")

    revoke = sub.add_parser(
        "revoke",
        help="revoke a FlexOffer sent and not yet ordered",
        description="Send a FlexOfferRevocation for OFFER_ID (flex-offer-revocation.md: not "
        "for an offer already ordered) and print the DSO's response.",
    )
    revoke.add_argument("offer_id", metavar="OFFER_ID", help="the FlexOffer's MessageID")
    _common(revoke, "AGR", sends=True)
    revoke.set_defaults(func=cmd_agr_revoke)

    _add_listing(sub, "agr reservations")


def cmd_agr_offer(args: argparse.Namespace) -> int:
    config = _config(args.config, Role.AGR)

    async def work(desk: _Desk) -> int:
        entry = await desk.book.get(Direction.RECEIVED, args.request_id)
        request = model_of(entry, FlexRequest)
        if entry is None or request is None:
            return _refused(f"no FlexRequest {args.request_id} was received")
        if entry.standing is not Standing.ACCEPTED:
            return _refused(f"the FlexRequest {args.request_id} was rejected: {entry.reason}")
        offer = _file(lambda: load_offer(args.offer_file, request))
        return await desk.exchange(offer, entry.peer_domain)

    return _run(config, args, work)


def cmd_agr_revoke(args: argparse.Namespace) -> int:
    config = _config(args.config, Role.AGR)

    async def work(desk: _Desk) -> int:
        entry = await desk.book.get(Direction.SENT, args.offer_id)
        if entry is None or entry.message_type != FlexOffer.xml_name:
            return _refused(f"no FlexOffer {args.offer_id} was sent")
        revocation = FlexOfferRevocation(flex_offer_message_id=entry.message_id)
        return await desk.exchange(revocation, entry.peer_domain)

    return _run(config, args, work)


# --- shared ----------------------------------------------------------------------------------


def _config(path: Path, role: Role) -> Config:
    config = load_config(path)
    if config.participant.role is not role:
        raise UsageError(f"{path} configures a {config.participant.role}, not a {role}")
    return config


def _single_peer(config: Config, role: Role) -> str:
    peers = [peer.domain for peer in config.peers if peer.role is role and not peer.barred]
    if len(peers) != 1:
        found = f"several ({', '.join(peers)})" if peers else "none"
        raise UsageError(f"--to: {config.path} has {found} {role} among its [[peers]]: name one")
    return peers[0]


def _factor(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(0)
    # The schema's ActivationFactorType: 0.01 to 1.00, two decimals.
    if not Decimal("0.01") <= value <= 1 or value != value.quantize(Decimal("0.01")):
        raise argparse.ArgumentTypeError(f"expected 0.01 to 1.00, got {text!r}")
    return value.quantize(Decimal("0.01"))


def _file(load: Callable[[], T]) -> T:
    try:
        return load()
    except FlexFileError as exc:
        raise UsageError(str(exc)) from None


def _refused(text: str) -> int:
    print(f"{PROG}: {text}; nothing sent", file=sys.stderr)
    return EXIT_REFUSED


Settle = tuple[Entry, tuple[Standing, ...], Standing]


class _Desk:
    """Where a flex command reads the book and sends: a running `serve` of its config
    (through its admin socket, the book read beside it) or a participant of its own."""

    def __init__(
        self,
        book: FlexBook,
        send: Callable[[PayloadRequest[Any], str, Settle | None], Awaitable[_Sent]],
    ) -> None:
        self.book = book
        self._send = send

    async def exchange(
        self, message: PayloadRequest[Any], to: str, *, settle: Settle | None = None
    ) -> int:
        """Send, print the message's id and the answer; the exit status."""
        try:
            outcome = await self._send(message, to, settle)
        except LookupError as exc:
            return _refused(str(exc))
        if isinstance(outcome, str):
            print(outcome)
            return EXIT_UNDELIVERED
        sent, response = outcome
        print(f"{sent.xml_name} {sent.message_id} to {to}")
        print(_describe(response))
        return EXIT_ACCEPTED if response.result is Result.ACCEPTED else EXIT_REJECTED


#: The message as sent and its response, or the line that says why there is none.
_Sent = tuple[PayloadMessage, PayloadResponse] | str
#: What a command does at its desk; its exit status.
Work = Callable[[_Desk], Awaitable[int]]


def _run(config: Config, args: argparse.Namespace, work: Work) -> int:
    """Run `work` through the running `serve` of `config` when there is one, else with a
    participant started here for the one exchange."""
    from adapter.ops.admin_client import find_daemon

    async def session() -> int:
        daemon = await find_daemon(config)
        if daemon is not None:
            async with daemon:
                return await _through(daemon, config, args, work)
        return await _standalone(config, args, work)

    return asyncio.run(session())


async def _through(
    daemon: Daemon,
    config: Config,
    args: argparse.Namespace,
    work: Callable[[_Desk], Awaitable[int]],
) -> int:
    """The running serve sends (and records, and settles) the message; the command reads the
    book beside it, as the listings do."""
    from adapter.assemble import new_store
    from adapter.store import flex_book_for

    async def send(message: PayloadRequest[Any], to: str, settle: Settle | None) -> _Sent:
        spec = None
        if settle is not None:
            entry, from_, to_standing = settle
            spec = {
                "direction": entry.direction.value,
                "peer": entry.peer_domain,
                "message_id": entry.message_id,
                "from": [standing.value for standing in from_],
                "to": to_standing.value,
            }
        return await daemon.flex_send(
            message, to, timeout=args.timeout, keep_trying=args.keep_trying, settle=spec
        )

    store = new_store(config.participant, exclusive=False)
    await store.open()
    try:
        return await work(_Desk(flex_book_for(store), send))
    finally:
        await store.close()


async def _standalone(config: Config, args: argparse.Namespace, work: Work) -> int:
    """A participant of its own, listening on the configured address for the answer."""
    from adapter.flex.desk import book_of
    from adapter.giving_up import gave_up
    from adapter.wiring import participant_for

    participant = participant_for(config)
    await participant.start()
    book = book_of(participant)

    async def send(message: PayloadRequest[Any], to: str, settle: Settle | None) -> _Sent:
        try:
            return await send_recorded(
                participant, book, message, to=to, timeout=args.timeout, settle=settle
            )
        except ResponseTimeout as exc:
            return await gave_up(participant, exc.message_id, args.timeout, args.keep_trying)
        except DeliveryFailed as exc:
            return f"not delivered: {exc}"
        except UnknownPeer as exc:
            return f"not sent: {exc}"

    try:
        return await work(_Desk(book, send))
    finally:
        await participant.stop()


def _describe(response: PayloadResponse) -> str:
    text = f"{response.xml_name} {response.result}"
    if response.result is Result.REJECTED and response.rejection_reason:
        reasons = rejection_reasons(response.rejection_reason)
        text += ":" + "".join(f"\n  - {printable(reason)}" for reason in reasons)
    return text


def _read_entries(config: Config, direction: Direction, message_type: str) -> list[Entry]:
    from adapter.assemble import new_store
    from adapter.config import SqliteStoreSettings
    from adapter.store import flex_book_for

    settings = config.participant.store
    if isinstance(settings, SqliteStoreSettings) and not settings.path.exists():
        return []  # has not run yet: nothing received

    async def read() -> list[Entry]:
        store = new_store(config.participant, exclusive=False)
        await store.open()
        try:
            return await flex_book_for(store).entries(direction, message_type)
        finally:
            await store.close()

    return asyncio.run(read())


# --- the listings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listing:
    """One listing command: the entries of one direction and message type in the book of a
    role, each a row (printed as JSON with --format json) or a line and its detail lines."""

    #: The command's --help and description.
    help: str
    description: str
    role: Role
    direction: Direction
    kind: type[PayloadMessage]
    #: What is printed when there are none.
    none: str
    row: Callable[[Entry, Any, datetime], dict[str, Any]]
    line: Callable[[dict[str, Any]], str]
    details: Callable[[dict[str, Any]], list[str]]

    def __call__(self, args: argparse.Namespace) -> int:
        config = _config(args.config, self.role)
        now = datetime.now(UTC)
        rows = []
        for entry in _read_entries(config, self.direction, self.kind.xml_name):
            message = model_of(entry, self.kind)
            assert message is not None
            rows.append(self.row(entry, message, now))
        if args.format == "json":
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print(self.none)
        for row in rows:  # the peer wrote most of it: escaped
            print(printable(self.line(row)))
            for text in self.details(row):
                print(printable(text))
        return 0


def _add_listing(sub: _SubParsers, words: str) -> None:
    """The listing command `words` (its role's word, its own) in its role's group."""
    listing = _LISTINGS[words]
    parser = sub.add_parser(words.split()[1], help=listing.help, description=listing.description)
    _common(parser, str(listing.role), sends=False)
    parser.set_defaults(func=listing)


def _row(entry: Entry, now: datetime, peer_key: str) -> dict[str, Any]:
    return {
        "message_id": entry.message_id,
        peer_key: entry.peer_domain,
        "congestion_point": entry.congestion_point,
        "period": entry.period.isoformat() if entry.period else None,
        "standing": entry.shown_standing(now),
        "reason": entry.reason,
    }


def _spans(isps: Iterable[Any]) -> list[dict[str, int]]:
    return [{"start": i.start, "duration": i.duration, "power": i.power} for i in isps]


def _span_lines(spans: list[dict[str, int]], what: str) -> list[str]:
    return [
        f"    ISP {s['start']}-{s['start'] + s['duration'] - 1}: {s['power']} W {what}"
        for s in spans
    ]


def _why(row: dict[str, Any]) -> str:
    return f" ({row['reason']})" if row.get("reason") else ""


def _request_row(entry: Entry, request: FlexRequest, now: datetime) -> dict[str, Any]:
    return {
        "message_id": entry.message_id,
        "dso": entry.peer_domain,
        "congestion_point": entry.congestion_point,
        "period": request.period.isoformat(),
        "revision": request.revision,
        "expires": request.expiration_date_time.isoformat(),
        "standing": entry.shown_standing(now),
        "reason": entry.reason,
        "isps": [
            {
                "start": isp.start,
                "duration": isp.duration,
                "min_power": isp.min_power,
                "max_power": isp.max_power,
                "disposition": isp.disposition and str(isp.disposition),
            }
            for isp in request.isps
        ],
    }


def _request_line(row: dict[str, Any]) -> str:
    return (
        f"{row['message_id']}  from {row['dso']}  {row['congestion_point']}  "
        f"{row['period']}  revision {row['revision']}  expires {row['expires']}  "
        f"{row['standing']}{_why(row)}"
    )


def _request_isps(row: dict[str, Any]) -> list[str]:
    return [
        f"    ISP {isp['start']}-{isp['start'] + isp['duration'] - 1}: "
        f"{isp['disposition'] or '-'} {isp['min_power']}..{isp['max_power']} W"
        for isp in row["isps"]
    ]


def _offer_row(entry: Entry, offer: FlexOffer, now: datetime, peer_key: str) -> dict[str, Any]:
    return {
        "message_id": entry.message_id,
        peer_key: entry.peer_domain,
        "flex_request": offer.flex_request_message_id,
        "congestion_point": offer.congestion_point,
        "period": offer.period.isoformat(),
        "expires": offer.expiration_date_time.isoformat(),
        "standing": entry.shown_standing(now),
        "reason": entry.reason,
        "settled_by": entry.settled_by,
        "currency": offer.currency,
        "options": [
            {
                "reference": option.option_reference,
                "price": str(option.price),
                "min_activation_factor": str(option.min_activation_factor),
                "isps": [
                    {"start": isp.start, "duration": isp.duration, "power": isp.power}
                    for isp in option.isps
                ],
            }
            for option in offer.offer_options
        ],
    }


def _offer_line(row: dict[str, Any], peer_key: str) -> str:
    return (
        f"{row['message_id']}  {peer_key} {row[peer_key]}  {row['congestion_point']}  "
        f"{row['period']}  expires {row['expires']}  {row['standing']}{_why(row)}"
    )


def _offer_options(row: dict[str, Any]) -> list[str]:
    lines = []
    for option in row["options"]:
        isps = ", ".join(
            f"ISP {i['start']}-{i['start'] + i['duration'] - 1}: {i['power']} W"
            for i in option["isps"]
        )
        lines.append(
            f"    option {option['reference']}: {option['price']} {row['currency']} "
            f"(min activation {option['min_activation_factor']}); {isps}"
        )
    return lines


def _offers(
    role: Role, direction: Direction, peer_key: str, help: str, description: str
) -> _Listing:
    return _Listing(
        help,
        description,
        role,
        direction,
        FlexOffer,
        "no FlexOffers",
        lambda entry, offer, now: _offer_row(entry, offer, now, peer_key),
        lambda row: _offer_line(row, peer_key),
        _offer_options,
    )


def _metering_row(entry: Entry, metering: Metering, now: datetime) -> dict[str, Any]:
    return {
        **_row(entry, now, "agr"),
        "ean": metering.ean,
        "revision": metering.revision,
        "profiles": [
            {
                "type": str(profile.profile_type),
                "unit": str(profile.unit),
                "isps": [{"start": i.start, "value": str(i.value)} for i in profile.isps],
            }
            for profile in metering.profiles
        ],
    }


#: The listing commands, by their words on the command line.
_LISTINGS = {
    "agr requests": _Listing(
        "print the FlexRequests received and where each stands",
        "Print the FlexRequests received: MessageID, DSO, congestion point, day, "
        "Revision, expiry, standing and the requested ISPs. Reads the store; safe while the "
        "AGR serves.",
        Role.AGR,
        Direction.RECEIVED,
        FlexRequest,
        "no FlexRequests received",
        _request_row,
        _request_line,
        _request_isps,
    ),
    "agr offers": _offers(
        Role.AGR,
        Direction.SENT,
        "to",
        "print the FlexOffers sent and where each stands",
        "Print the FlexOffers sent: MessageID, DSO, congestion point, day, expiry "
        "and standing (open, accepted, rejected, revoked, ordered, expired). Reads the store; "
        "safe while the AGR serves.",
    ),
    "dso offers": _offers(
        Role.DSO,
        Direction.RECEIVED,
        "from",
        "print the FlexOffers received and where each stands",
        "Print the FlexOffers received: MessageID, AGR, congestion point, day, "
        "expiry, standing (accepted, rejected with its reasons, revoked, ordered, expired) "
        "and options. Reads the store; safe while the DSO serves.",
    ),
    "agr reservations": _Listing(
        "print the FlexReservationUpdates received and where each stands",
        "Print the FlexReservationUpdates received (flex-reservation-update.md): "
        "MessageID, DSO, congestion point, day, ContractID, Reference, standing and the power "
        "still reserved per ISP. Reads the store; safe while the AGR serves. A DSO sends them "
        "with `send`.",
        Role.AGR,
        Direction.RECEIVED,
        FlexReservationUpdate,
        "no FlexReservationUpdates received",
        lambda entry, update, now: {
            **_row(entry, now, "dso"),
            "contract_id": update.contract_id,
            "reference": update.reference,
            "isps": _spans(update.isps),
        },
        lambda row: (
            f"{row['message_id']}  from {row['dso']}  {row['congestion_point']}  "
            f"{row['period']}  contract {row['contract_id']}  reference {row['reference']}  "
            f"{row['standing']}{_why(row)}"
        ),
        lambda row: _span_lines(row["isps"], "reserved"),
    ),
    "dso prognoses": _Listing(
        "print the D-Prognoses received and where each stands",
        "Print the D-Prognoses received (d-prognosis.md): MessageID, AGR, "
        "congestion point, day, Revision, standing (accepted, or rejected with its reasons) "
        "and the power per ISP. Reads the store; safe while the DSO serves. An AGR sends "
        "them with `send`.",
        Role.DSO,
        Direction.RECEIVED,
        DPrognosis,
        "no D-Prognoses received",
        lambda entry, prognosis, now: {
            **_row(entry, now, "agr"),
            "revision": prognosis.revision,
            "isps": _spans(prognosis.isps),
        },
        lambda row: (
            f"{row['message_id']}  from {row['agr']}  {row['congestion_point']}  "
            f"{row['period']}  revision {row['revision']}  {row['standing']}{_why(row)}"
        ),
        lambda row: _span_lines(row["isps"], "forecast"),
    ),
    "dso metering": _Listing(
        "print the Metering messages received and where each stands",
        "Print the Metering messages received (metering.md): MessageID, AGR, "
        "connection (EAN), day, Revision, standing, and each profile's type, unit and number "
        "of ISPs (every value with --format json). Reads the store; safe while the DSO "
        "serves. An AGR sends them with `send`.",
        Role.DSO,
        Direction.RECEIVED,
        Metering,
        "no Metering messages received",
        _metering_row,
        lambda row: (
            f"{row['message_id']}  from {row['agr']}  {row['ean']}  {row['period']}  "
            f"revision {row['revision']}  {row['standing']}{_why(row)}"
        ),
        lambda row: [
            f"    {p['type']} in {p['unit']}: {len(p['isps'])} ISPs" for p in row["profiles"]
        ],
    ),
}
