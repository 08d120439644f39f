"""The adapter SIGKILLed where the bus guarantees are most at risk, as a user runs it
(``python -m adapter serve``), against the real RabbitMQ: between committing events and
publishing them, and between consuming commands and acknowledging them. Counted against the
store after the restart: lost must be 0; duplicates are what at-least-once allows, removed
by event id (events) or absorbed by the command id and the UFTP MessageID (commands)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import aiormq
import pytest

from adapter.bus.rabbitmq import Topology
from adapter.config import load_config
from adapter.run import participant_for
from adapter.uftp.messages import Result
from tests.bus.conftest import AMQP_URL
from tests.bus.test_bridge_events import update
from tests.bus.test_rabbitmq_e2e import publish_command
from tests.bus.tools import EventSink, Proxy
from tests.conftest import eventually
from tests.resilience.harness import CRO_DOMAIN, Site, cro_process, write_keys, write_site
from tests.serve import Process, serve_argv, until_serving

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def bus_table(topology: Topology, url: str) -> str:
    return f"""
[bus]
url = "{url}"
exchange = "{topology.events_exchange}"
commands_exchange = "{topology.commands_exchange}"
commands_queue = "{topology.commands_queue}"
dead_letter_exchange = "{topology.dead_letter_exchange}"
dead_letter_queue = "{topology.dead_letter_queue}"
"""


def site_with_bus(tmp_path: Path, topology: Topology, url: str, *, on: str) -> Site:
    site = write_site(tmp_path / "site", write_keys(tmp_path / "keys"))
    path = site.cro_config if on == "cro" else site.dso_config
    path.write_text(path.read_text() + bus_table(topology, url))
    return site


def read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def dso_serving(site: Site, run: int) -> Process:
    """The DSO as a user runs it, `serve` with its [bus]."""
    return Process(f"DSO run {run}", serve_argv(site.dso_config), site.root / f"dso-{run}.log")


async def bus_ready(port: int) -> None:
    """Until `/health/bus` says the participant is connected to the broker and consuming:
    `serving` comes first, and the bus connects beside it."""

    async def ready() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/health/bus") as response,
        ):
            return response.status == 200

    await eventually(ready, timeout=30)


async def test_killed_between_commit_and_publish_the_events_go_out_after_restart(
    tmp_path: Path, amqp: Any, topology: Topology
) -> None:
    proxy = Proxy()
    await proxy.start()
    site = site_with_bus(
        tmp_path, topology, f"amqp://guest:guest@127.0.0.1:{proxy.port}/", on="cro"
    )
    sink = await EventSink.bind(amqp, topology.events_exchange)
    dso = participant_for(load_config(site.dso_config))
    first = cro_process(site, 1)
    await first.start()
    second: Process | None = None
    try:
        await until_serving(first)
        await bus_ready(site.cro_port)
        await dso.start()
        await proxy.cut()  # events are committed, and stay unpublished
        messages = 30
        for n in range(messages):
            response = await dso.request(update(1 + n % 3), to=CRO_DOMAIN, timeout=15)
            assert response.result is Result.ACCEPTED

        def stored() -> int:
            return len(read(site.cro_store, "SELECT 1 FROM bus_events"))

        await eventually(lambda: stored() == 3 * messages, timeout=15)
        unpublished = len(
            read(site.cro_store, "SELECT 1 FROM bus_events WHERE published_at IS NULL")
        )
        first.kill()
        await first.wait()
        await proxy.restore()
        second = cro_process(site, 2)
        await second.start()
        await until_serving(second)
        ids = {row[0] for row in read(site.cro_store, "SELECT event_id FROM bus_events")}
        await eventually(lambda: set(sink.events) >= ids, timeout=60)
        lost = len(ids - set(sink.events))
        print(
            f"\nSIGKILL between commit and publish: {len(ids)} events ({unpublished} "
            f"unpublished at the kill), lost {lost}, duplicated {sink.duplicates}"
        )
        assert lost == 0 and unpublished > 0
    finally:
        await dso.stop()
        await first.ensure_dead()
        if second is not None:
            await second.terminate()
        await proxy.cut()


async def test_killed_between_consuming_and_acknowledging_commands_each_is_sent_once(
    tmp_path: Path, amqp: Any, topology: Topology
) -> None:
    site = site_with_bus(tmp_path, topology, AMQP_URL, on="dso")
    cro = participant_for(load_config(site.cro_config))
    await cro.start()
    first, second = dso_serving(site, 1), dso_serving(site, 2)
    await first.start()
    try:
        await until_serving(first)
        await eventually(lambda: _consumers(amqp, topology.commands_queue), timeout=15)
        commands = 300

        async def produce() -> None:  # a steady stream, so that the kill falls inside it
            for n in range(commands):
                await publish_command(
                    amqp, topology, f"kill-{n}", b"<TestMessage/>", uftprecipient=CRO_DOMAIN
                )
                await asyncio.sleep(0.005)

        producer = asyncio.ensure_future(produce())

        def received() -> int:
            return int(
                read(
                    cro.store.path,  # type: ignore[attr-defined]
                    "SELECT count(*) FROM inbound WHERE message_type = 'TestMessage'",
                )[0][0]
            )

        await eventually(lambda: received() >= 40, timeout=30)
        first.kill()  # commands in flight: consumed, some committed, not all acknowledged
        await first.wait()
        at_kill = received()
        await second.start()
        await until_serving(second)
        await producer
        await eventually(lambda: received() >= commands, timeout=90)
        await asyncio.sleep(2)  # anything sent twice would have arrived by now
        sent = received()
        carried = len(read(site.dso_store, "SELECT 1 FROM bus_commands"))
        redelivered = (site.root / "dso-2.log").read_text().count("carried out before")
        print(
            f"\nSIGKILL between consuming and acknowledging: {commands} commands, {at_kill} "
            f"messages sent at the kill, {redelivered} redelivered commands found done, "
            f"{sent} messages after the restart: lost {commands - sent}, "
            f"duplicated {sent - commands}"
        )
        assert sent == commands and carried == commands
    finally:
        await cro.stop()
        await first.ensure_dead()
        if second.returncode is None and second._proc is not None:
            await second.terminate()


async def _consumers(connection: Any, queue: str) -> bool:
    """Whether the adapter consumes `queue` (a channel per look: a passive declaration of a
    queue not there yet closes its channel)."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    consuming = bool(declared.declaration_result.consumer_count)
    await channel.close()
    return consuming
