"""Poison commands among good ones, on each real broker: commands that can never be carried
out (schema-invalid, an unknown recipient) and commands our side crashes on at every
delivery. Neither may block the good commands behind them or be retried forever: the first
are dead-lettered at once with an ``error.command`` event, the second once the queue's
delivery limit is reached. Figures (commands, carried out, lost, duplicated, dead-lettered)
are printed; lost and duplicated must be 0."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from adapter.bus.port import Command, Verdict
from adapter.uftp.messages import Role
from tests.bus.brokers import BrokerSide, bridge
from tests.bus.test_bridge_events import CRO, DSO
from tests.conftest import Network, eventually

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

GOOD = b"<TestMessage/>"
POISON = {
    "invalid": b"<DSOPortfolioUpdate Bogus='1'/>",  # not schema-valid
    "stranger": GOOD,  # addressed to a domain nobody configured
}


async def test_poison_commands_are_dead_lettered_and_the_good_ones_pass_once_each(
    network: Network, bus_broker: BrokerSide
) -> None:
    errors = await bus_broker.sink("error.*")
    dso_bridge = bridge(bus_broker)
    deliveries: Counter[str] = Counter()
    carry_out = dso_bridge.handle_command

    async def crashing_on_some(command: Command) -> Verdict:
        """The bridge, with a bug that hits some commands at every delivery."""
        deliveries[command.id or ""] += 1
        if (command.id or "").startswith("crash-"):
            raise RuntimeError("a bug in the handler")
        return await carry_out(command)

    dso_bridge.handle_command = crashing_on_some  # type: ignore[method-assign]
    dso = network.create(DSO, Role.DSO, bus=dso_bridge)
    cro = network.create(CRO, Role.CRO)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    await eventually(lambda: dso_bridge.health().consuming, timeout=15)

    good = [f"good-{n}" for n in range(40)]
    invalid = [f"invalid-{n}" for n in range(4)]
    strangers = [f"stranger-{n}" for n in range(2)]
    crashes = [f"crash-{n}" for n in range(2)]
    for n, command_id in enumerate(good):
        await bus_broker.send_command(command_id, GOOD, uftprecipient=CRO)
        if n % 10 == 0:  # the poison among the good ones
            poison = (invalid + strangers + crashes)[n // 10 :: 4]
            for bad in poison:
                kind = bad.split("-")[0]
                body = POISON.get(kind, GOOD)
                recipient = "nobody.example.com" if kind == "stranger" else CRO
                await bus_broker.send_command(bad, body, uftprecipient=recipient)
    dead: list[str] = []

    async def settled() -> bool:
        dead.extend(await bus_broker.dead_letters())
        carried = [await dso.store.command_message(i) for i in good]
        return all(carried) and len(dead) >= len(invalid + strangers + crashes)

    await eventually(settled, timeout=90)

    async def tests_at_the_cro() -> int:
        def count(conn: Any) -> int:
            return int(
                conn.execute(
                    "SELECT count(*) FROM inbound WHERE message_type = 'TestMessage'"
                ).fetchone()[0]
            )

        return await cro.store.read(count)  # type: ignore[attr-defined]

    async def all_arrived() -> bool:
        return await tests_at_the_cro() >= len(good)

    await eventually(all_arrived, timeout=30)
    await eventually(lambda: len(errors.of("error.command")) == len(invalid + strangers))
    await asyncio.sleep(1)  # anything sent twice or dead-lettered again would show by now
    dead.extend(await bus_broker.dead_letters())
    sent = await tests_at_the_cro()
    crash_deliveries = [deliveries[c] for c in crashes]
    print(
        f"\npoison commands on {bus_broker.kind}: {len(good)} good, {len(invalid)} "
        f"schema-invalid, {len(strangers)} to an unknown domain, {len(crashes)} crashing; "
        f"{sent} UFTP messages sent: lost {len(good) - sent}, duplicated "
        f"{max(0, sent - len(good))}; dead-lettered {sorted(dead)}; crashing ones delivered "
        f"{crash_deliveries} times"
    )
    assert sent == len(good)
    assert sorted(dead) == sorted(invalid + strangers + crashes)
    assert sorted(e.extensions["commandid"] for e in errors.of("error.command")) == sorted(
        invalid + strangers
    )
    # Refused at the first delivery; crashing ones retried up to the limit, then given up.
    assert all(deliveries[i] == 1 for i in invalid + strangers)
    limit = 3  # the delivery limit of the test's queue (tests.bus.brokers)
    assert all(limit <= count <= limit + 1 for count in crash_deliveries), crash_deliveries
    assert await dso.store.pending_outbound() == []
