"""The real RabbitMQ on loopback for the bus tests: names unique to each test, deleted after.

`UFTP_TEST_AMQP_URL` names the broker (default amqp://guest:guest@127.0.0.1:5672/). When
it cannot be reached the tests skip, unless CI is set or the variable is given explicitly:
then they fail, so that CI cannot pass by skipping the broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from adapter.bus.rabbitmq import Topology

AMQP_URL = os.environ.get("UFTP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
AMQP_REQUIRED = "UFTP_TEST_AMQP_URL" in os.environ or os.environ.get("CI", "").lower() in (
    "1",
    "true",
    "yes",
)


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
