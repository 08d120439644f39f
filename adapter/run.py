"""Running participants from configuration: `serve`, `send` and the loopback demo.

Kept apart from the argument parsing in `cli.py` so that each can be driven from Python (and
from tests) without a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .config import Config, ConfigError, load_config
from .keys import load_or_generate
from .participant import DeliveryFailed, Participant, ResponseTimeout, UnknownPeer
from .roles import role_router
from .router import Router
from .uftp import codec
from .uftp.errors import InvalidXml
from .uftp.messages import PayloadMessage, PayloadResponse, Result

log = logging.getLogger(__name__)

#: Exit statuses of `send` (and of commands built on it).
EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_UNDELIVERED = 2


def participant_for(config: Config) -> Participant:
    """The participant a configuration describes, with the ready-made handlers of its role
    and the handler modules of its [handlers] table."""
    participant = Participant.from_config(config)
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


async def serve(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Run the endpoint until SIGINT/SIGTERM (or `stop` is set), then shut down cleanly:
    in-flight handlers finish, POSTs on the wire return, pending deliveries stay in the store
    for the next start."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    participant = participant_for(config)
    await participant.start()
    print(f"serving {participant.role} {participant.domain} at {participant.url()}", flush=True)
    try:
        await stop.wait()
    finally:
        print("shutting down", flush=True)
        await participant.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def read_message_file(path: Path) -> PayloadMessage:
    """A UFTP message from an XML file. Its metadata is replaced when it is sent (new
    MessageID, our domain, now), so a template with placeholder metadata is fine."""
    try:
        return codec.decode(path.read_bytes())
    except OSError as exc:
        raise InvalidXml(f"{path}: {exc.strerror or exc}") from None
    except InvalidXml as exc:
        raise InvalidXml(f"{path}: {exc.detail}") from None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    response: PayloadResponse | None


async def request_once(
    config: Config,
    message: PayloadMessage,
    to: str,
    *,
    timeout: float,
    out: TextIO = sys.stdout,
    describe: Callable[[PayloadResponse], str] | None = None,
) -> Outcome:
    """Start the participant (to receive the answer), send one request, print the answer.

    Exit status: 0 Accepted, 1 Rejected, 2 not delivered or no answer in time.
    """
    participant = participant_for(config)
    await participant.start()
    try:
        response = await participant.request(message, to=to, timeout=timeout)
    except (DeliveryFailed, ResponseTimeout, UnknownPeer) as exc:
        print(f"not answered: {exc}", file=out)
        return Outcome(EXIT_UNDELIVERED, None)
    finally:
        await participant.stop()
    print(describe(response) if describe else describe_response(response), file=out)
    return Outcome(EXIT_ACCEPTED if response.accepted else EXIT_REJECTED, response)


def describe_response(response: PayloadResponse) -> str:
    text = f"{response.xml_name} {response.result}"
    if response.result is Result.REJECTED and response.rejection_reason:
        text += f": {response.rejection_reason}"
    return text


# -- the loopback demo -----------------------------------------------------------------------


def ensure_key(config_path: Path) -> None:
    """Generate the participant's signing key if the config asks for it on first run.

    Needed before loading the configs themselves: each sample config reads the other's
    public key file.
    """
    with config_path.open("rb") as handle:
        table = tomllib.load(handle).get("participant", {})
    key = table.get("signing_key")
    if isinstance(key, str) and table.get("generate_key"):
        load_or_generate((config_path.parent / key).resolve())


async def demo(config_dir: Path, out: TextIO = sys.stdout) -> int:
    """Start the sample CRO and DSO on loopback; the DSO publishes `portfolio.csv` and asks
    for one congestion point back; the CRO's register is shown as it stands."""
    from .cro.show import read_report, render_text
    from .dso import load_portfolio, publish, query
    from .dso.publish import describe_query

    dso_path, cro_path = config_dir / "dso.toml", config_dir / "cro.toml"
    for path in (dso_path, cro_path):
        ensure_key(path)
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
