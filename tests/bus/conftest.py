"""The real brokers on loopback for the bus tests: names unique to each test, deleted after.

`UFTP_TEST_AMQP_URL` names the RabbitMQ (default amqp://guest:guest@127.0.0.1:5672/),
`UFTP_TEST_NATS_URL` the NATS server with JetStream (default nats://127.0.0.1:4222). When a
broker cannot be reached its tests skip, unless CI is set or the variable is given
explicitly: then they fail, so that CI cannot pass by skipping the broker.

`bus_broker` runs a test once on each broker (`tests.bus.brokers.BrokerSide`).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from adapter.bus.rabbitmq import Topology

AMQP_URL = os.environ.get("UFTP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: CI=true (or 1, yes) makes a test fail, not skip, without its broker: as tests/postgres.py.
_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
AMQP_REQUIRED = "UFTP_TEST_AMQP_URL" in os.environ or _CI
NATS_URL = os.environ.get("UFTP_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_REQUIRED = "UFTP_TEST_NATS_URL" in os.environ or _CI


def reachable(url: str) -> str | None:
    """None when a TCP connection to the host and port of `url` opens; else why not."""
    host, _, port = url.rsplit("//", 1)[-1].rsplit("@", 1)[-1].partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=2):
            return None
    except OSError as exc:
        return str(exc)


async def nats_client() -> object:
    """A plain client of the test NATS server; skips or fails the test without one."""
    nats = pytest.importorskip("nats")
    problem = reachable(NATS_URL)
    if problem is not None:
        message = f"no NATS server at {NATS_URL}: {problem}"
        if NATS_REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)


@pytest.fixture
async def amqp() -> AsyncIterator[object]:
    """A connection to the test broker (aio-pika), for the test's own producer/consumer."""
    aio_pika = pytest.importorskip("aio_pika")
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        if AMQP_REQUIRED:
            pytest.fail(f"RabbitMQ at {AMQP_URL} is required here and unreachable: {exc}")
        pytest.skip(f"no RabbitMQ at {AMQP_URL}: {exc}")
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def topology(amqp: object) -> AsyncIterator[Topology]:
    """Exchange and queue names of this test alone; deleted afterwards."""
    prefix = f"test.{uuid.uuid4().hex[:10]}"
    names = Topology(
        events_exchange=f"{prefix}.events",
        commands_exchange=f"{prefix}.commands",
        commands_queue=f"{prefix}.commands",
        dead_letter_exchange=f"{prefix}.dead",
        dead_letter_queue=f"{prefix}.dead",
        delivery_limit=3,
        prefetch=8,
    )
    try:
        yield names
    finally:
        channel = await amqp.channel()  # type: ignore[attr-defined]
        for queue in (names.commands_queue, names.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (
            names.events_exchange,
            names.commands_exchange,
            names.dead_letter_exchange,
        ):
            await channel.exchange_delete(exchange)
        await channel.close()


@pytest.fixture(params=["rabbitmq", "nats"])
async def bus_broker(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """The test's broker side, once on RabbitMQ and once on NATS JetStream."""
    from tests.bus.brokers import BrokerSide, NatsSide, RabbitSide

    side: BrokerSide
    client: object
    if request.param == "rabbitmq":
        aio_pika = pytest.importorskip("aio_pika")
        try:
            client = await aio_pika.connect(AMQP_URL, timeout=5)
        except Exception as exc:
            if AMQP_REQUIRED:
                pytest.fail(f"RabbitMQ at {AMQP_URL} is required here and unreachable: {exc}")
            pytest.skip(f"no RabbitMQ at {AMQP_URL}: {exc}")
        side = RabbitSide(AMQP_URL, client)
    else:
        client = await nats_client()
        side = NatsSide(NATS_URL, client)  # type: ignore[arg-type]
    try:
        if isinstance(side, NatsSide):
            await side.declare()
        yield side
    finally:
        try:
            await side.cleanup()
        finally:
            await client.close()  # type: ignore[attr-defined]
