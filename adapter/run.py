"""Running participants from configuration: `serve`, `send` and the loopback demo.

Kept apart from the argument parsing in `cli.py` so that each can be driven from Python (and
from tests) without a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from . import assemble
from .bulk import LARGE_MESSAGES
from .config import Config, load_config
from .errors import DeliveryFailed, ResponseTimeout, UnknownPeer
from .giving_up import gave_up
from .keys import KeyFileExists, generate, write_private
from .participant import Participant
from .printable import printable
from .uftp import codec
from .uftp.errors import AdapterError, InvalidXml
from .uftp.messages import PayloadMessage, PayloadRequest, PayloadResponse, Result
from .wiring import participant_for

log = logging.getLogger(__name__)

R = TypeVar("R", bound=PayloadResponse)

#: Exit statuses of `send` (and of commands built on it).
EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_UNDELIVERED = 2
#: SIGHUP reads the configuration's peers again (where the platform has it).
_RELOAD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGHUP",) if hasattr(signal, name))


async def serve(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    sockets: list[socket.socket] | None = None,
    log_format: str = "text",
    admin: bool = True,
) -> None:
    """Run the endpoint until SIGINT/SIGTERM (or `stop` is set), then shut down cleanly:
    in-flight handlers finish, POSTs on the wire return, pending deliveries stay in the store
    for the next start. With [metrics], its listener serves from before the start to after
    the stop (`adapter.ops.service`). `sockets`: listening already (a worker's; see
    `adapter.workers`). `admin`: serve the admin socket of [admin], through which the
    command line uses this process (`adapter.ops.admin`)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        from .ops.logs import announce
        from .ops.service import Service

        service = Service(config, admin=admin)
        participant = service.participant
        for sig in _RELOAD_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, reread_peers, config.path, participant)
        # Raises `listen.CannotListen` ("port 8080 on 127.0.0.1 is in use") having sent and
        # handled nothing, and closed what it opened.
        await service.start(sockets=sockets)
        serving = f"serving {participant.role} {participant.domain} at {participant.url()}"
        if service.ops_server is not None:
            serving += f", metrics at {service.ops_server.url()}"
        announce(serving, log_format)
        try:
            await stop.wait()
        finally:
            announce("shutting down", log_format)
            await service.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, *_RELOAD_SIGNALS):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def reread_peers(path: Path, participant: Participant) -> None:
    """SIGHUP: read the configuration file again and give the participant its [[peers]]
    (and its signing keys, which `keys activate` may have changed) without a restart. A file
    that no longer reads leaves everything as it was, and says why."""
    try:
        fresh = load_config(path)
    except AdapterError as exc:
        log.error("SIGHUP: the configuration did not read again, nothing changed: %s", exc)
        return
    assemble.reload_peers(participant.directory, fresh)
    if participant.credentials is not None:  # the peers' OAuth2 clients
        assemble.reload_credentials(participant.credentials, fresh)
    participant.reload_keys()
    log.info("SIGHUP: %s read again: %d configured peers", path, len(fresh.peers))


def read_message_file(path: Path) -> PayloadMessage:
    """A UFTP message from an XML file. Its metadata is replaced when it is sent (new
    MessageID, our domain, now), so a template with placeholder metadata is fine."""
    try:
        return codec.decode(path.read_bytes(), bulk=LARGE_MESSAGES)
    except OSError as exc:
        raise InvalidXml(f"{path}: {exc.strerror or exc}") from None
    except InvalidXml as exc:
        raise InvalidXml(f"{path}: {exc.detail}") from None


@dataclass(frozen=True, slots=True)
class RequestResult:
    status: int
    response: PayloadResponse | None


async def request_once(
    config: Config,
    message: PayloadRequest[R],
    to: str,
    *,
    timeout: float,
    keep_trying: bool = False,
    out: TextIO = sys.stdout,
    describe: Callable[[R], str] | None = None,
) -> RequestResult:
    """Send one request and print the answer: through a running `serve` of `config` when
    there is one (its admin socket, `adapter.ops.admin`), else from a participant started
    here for the purpose (to receive the answer).

    Giving up after `timeout` seconds, it says what happened (delivered but not answered, or
    not delivered and why) and withdraws a message not yet delivered from the outbox, unless
    `keep_trying`: nobody would be told when it arrived later. Exit status: 0 Accepted,
    1 Rejected, 2 not delivered or no answer in time.
    """
    from .ops.admin_client import find_daemon

    daemon = await find_daemon(config)
    if daemon is not None:
        async with daemon:
            answer = await daemon.request(message, to, timeout=timeout, keep_trying=keep_trying)
    else:
        answer = await _request_standalone(config, message, to, timeout, keep_trying)
    if isinstance(answer, str):
        print(answer, file=out)
        return RequestResult(EXIT_UNDELIVERED, None)
    print(describe(answer) if describe else describe_response(answer), file=out)
    return RequestResult(EXIT_ACCEPTED if answer.accepted else EXIT_REJECTED, answer)


async def _request_standalone(
    config: Config, message: PayloadRequest[R], to: str, timeout: float, keep_trying: bool
) -> R | str:
    """`request_once` in a participant of its own: the response, or the line that says why
    there is none."""
    participant = participant_for(config)
    await participant.start()
    try:
        return await participant.request(message, to=to, timeout=timeout)
    except ResponseTimeout as exc:
        return await gave_up(participant, exc.message_id, timeout, keep_trying)
    except DeliveryFailed as exc:
        return f"not delivered: {exc}"
    except UnknownPeer as exc:
        return f"not sent: {exc}"
    finally:
        await participant.stop()


def describe_response(response: PayloadResponse) -> str:
    text = f"{response.xml_name} {response.result}"
    if response.result is Result.REJECTED and response.rejection_reason:
        text += f": {printable(response.rejection_reason)}"
    return text


# -- the loopback demo -----------------------------------------------------------------------


def ensure_key(config_path: Path) -> Path | None:
    """The demo's first run: create the signing key the config names, if there is none yet;
    returns its path when it was created.

    Only the demo does this: `serve` refuses a missing key, so that a typo in signing_key
    never gives a participant a new identity. Needed before loading the configs themselves:
    each sample config reads the other's public key file.
    """
    with config_path.open("rb") as handle:
        key = tomllib.load(handle).get("participant", {}).get("signing_key")
    if not isinstance(key, str):
        return None
    path = (config_path.parent / key).resolve()
    try:
        write_private(path, generate())
    except KeyFileExists:
        return None
    return path


async def demo(config_dir: Path, out: TextIO = sys.stdout) -> int:
    """Start the sample CRO and DSO on loopback; the DSO publishes `portfolio.csv` and asks
    for one congestion point back; the CRO's register is shown as it stands."""
    from .cro.show import read_report, render_text
    from .dso import load_portfolio, publish, query
    from .dso.publish import describe_query

    dso_path, cro_path = config_dir / "dso.toml", config_dir / "cro.toml"
    for path in (dso_path, cro_path):
        if created := ensure_key(path):
            print(f"first run: created the sample key {created} and its .pub", file=out)
    dso_config, cro_config = load_config(dso_path), load_config(cro_path)
    update = load_portfolio(config_dir / "portfolio.csv")
    cro = participant_for(cro_config)
    dso = participant_for(dso_config)
    await cro.start()
    await dso.start()
    try:
        print(f"CRO {cro.domain} listening at {cro.url()}", file=out)
        print(f"DSO {dso.domain} listening at {dso.url()}", file=out)
        connections = sum(len(cp.connections) for cp in update.congestion_points)
        print(
            f"DSO -> CRO: DSOPortfolioUpdate from {config_dir / 'portfolio.csv'},"
            f" {len(update.congestion_points)} congestion points, {connections} connections",
            file=out,
        )
        response = await publish(dso, update, to=cro.domain, timeout=30)
        print(f"CRO -> DSO: {describe_response(response)}", file=out)
        print(
            f"  conversation {response.conversation_id}, answering {response.reference_message_id}",
            file=out,
        )
        if not response.accepted:
            return EXIT_REJECTED
        point = update.congestion_points[0]
        print(
            f"DSO -> CRO: DSOPortfolioQuery {point.entity_address} on {point.start_period}",
            file=out,
        )
        answer = await query(dso, point.entity_address, point.start_period, to=cro.domain)
        print("CRO -> DSO: " + describe_query(answer).replace("\n", "\n  "), file=out)
        print("The CRO's register now:", file=out)
        report = await read_report(cro_config, store=cro.store)
        print("  " + render_text(report).rstrip("\n").replace("\n", "\n  "), file=out)
        return EXIT_ACCEPTED
    finally:
        await dso.stop()
        await cro.stop()
