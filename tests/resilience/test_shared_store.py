"""Several processes on one PostgreSQL store, as OS processes on loopback, one of them killed.

What a shared store must give (README, "Durability"): every message delivered exactly once
whichever process holds it, the per-peer cap held by all processes together, every response
reaching the `request()` that awaits it in whichever process, and nothing lost when a process
dies - its claims lapse and another takes its work over. Each test has its own schema of the
real PostgreSQL (UFTP_TEST_POSTGRES_DSN); the peer is real too: it verifies each signature,
and counts the POSTs it answers with 200 per MessageID.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.config import load_config
from adapter.participant import DeliveryFailed, Participant
from adapter.run import participant_for
from adapter.store.base import OutboundStatus
from adapter.uftp.messages import DSOPortfolioQuery, DSOPortfolioQueryResponse, Result
from tests.postgres import import_asyncpg
from tests.resilience.dso_driver import portfolio_update
from tests.resilience.harness import free_port
from tests.resilience.shared import (
    CRO,
    DSO,
    LEASE_SECONDS,
    PER_PEER,
    PG_DSN,
    CountingPeer,
    Processes,
    dso_config,
    inbound_status,
    outbound_status,
    store_url,
    until,
    write_config,
)
from tests.resilience.stores import open_read_only, read_sender
from tests.serve import Process

asyncpg = import_asyncpg()

pytestmark = pytest.mark.skipif(os.name != "posix", reason="processes killed with SIGKILL")


async def test_three_processes_deliver_every_message_once_within_one_cap(
    tmp_path: Path,
    site_keys: Path,
    pg_schema: str,
    counting_peer: CountingPeer,
    children: Processes,
) -> None:
    """Three processes each queue a burst while the peer refuses (503), so that each starts
    with the others' messages pending in the store; then the peer accepts. Each message is
    accepted exactly once, and the peer never has more than the cap in progress."""
    counting_peer.closed = True
    counting_peer.delay = 0.02
    drivers = []
    for name in ("a", "b", "c"):
        config = dso_config(tmp_path, site_keys, pg_schema, name, counting_peer.url)
        drivers.append(await children.driver(name, config, 30))
    for driver in drivers:
        await driver.until(lambda event: event["event"] == "burst", 60)
    await asyncio.sleep(2 * LEASE_SECONDS)  # every process has polled the store meanwhile
    assert (await outbound_status(pg_schema))["pending"] == 90

    counting_peer.closed = False
    await until(lambda: len(counting_peer.accepted) == 90, 60, "every message accepted")
    await asyncio.sleep(1.0)  # a copy sent twice would have arrived by now

    sent = {event["message_id"] for d in drivers for event in d.events if event["event"] == "sent"}
    assert set(counting_peer.accepted) == sent and len(sent) == 90
    assert [m for m, n in counting_peer.accepted.items() if n != 1] == []
    assert counting_peer.most_in_progress <= PER_PEER
    assert await outbound_status(pg_schema) == Counter({"delivered": 90})


async def test_a_process_killed_mid_burst_loses_nothing(
    tmp_path: Path,
    site_keys: Path,
    pg_schema: str,
    counting_peer: CountingPeer,
    children: Processes,
) -> None:
    """A process is SIGKILLed while it delivers its burst: its claims lapse and the other
    process delivers the rest. Only what was on the wire at the kill (at most the cap) may
    arrive twice, which the receiver's duplicate check answers."""
    counting_peer.delay = 0.05
    survivor = await children.serve(
        "survivor", dso_config(tmp_path, site_keys, pg_schema, "b", counting_peer.url)
    )
    victim = await children.driver(
        "victim", dso_config(tmp_path, site_keys, pg_schema, "a", counting_peer.url), 60
    )
    await victim.until(lambda event: event["event"] == "burst", 60)
    await until(lambda: len(counting_peer.accepted) >= 10, 30, "the victim delivering")

    victim.kill()
    await victim.wait()
    left = (await outbound_status(pg_schema))["pending"]
    assert left > 10  # the survivor has work to take over

    await until(lambda: len(counting_peer.accepted) == 60, 30, "the survivor delivering the rest")
    await asyncio.sleep(1.0)
    assert sum(1 for n in counting_peer.accepted.values() if n > 1) <= PER_PEER
    assert counting_peer.most_in_progress <= PER_PEER
    assert await outbound_status(pg_schema) == Counter({"delivered": 60})
    assert survivor.returncode is None


async def test_a_response_posted_to_another_process_reaches_the_waiting_request(
    tmp_path: Path, site_keys: Path, pg_schema: str, children: Processes
) -> None:
    """request() runs here, in process A; the CRO answers to process B (a load balancer in
    front of both would choose either; here the CRO knows only B's address)."""
    b_port = free_port()
    cro_config = write_config(
        tmp_path / "cro.toml",
        domain=CRO,
        role="CRO",
        key=site_keys / "cro.key",
        port=free_port(),
        store=f"sqlite:{tmp_path / 'cro.sqlite3'}",
        peer_domain=DSO,
        peer_role="DSO",
        peer_url=f"http://127.0.0.1:{b_port}/shapeshifter/api/v3/message",
        peer_pub=site_keys / "dso.pub",
        extra='[cro]\nmode = "open"\n',
    )
    cro = participant_for(load_config(cro_config))
    await cro.start()
    a: Participant | None = None
    try:
        await children.serve(
            "b", dso_config(tmp_path, site_keys, pg_schema, "b", cro.url(), b_port)
        )
        a = participant_for(load_config(dso_config(tmp_path, site_keys, pg_schema, "a", cro.url())))
        await a.start()

        update = portfolio_update(0, 2)
        accepted = await a.request(update, to=CRO, timeout=30)
        assert accepted.result is Result.ACCEPTED
        point = update.congestion_points[0]
        queries = [
            DSOPortfolioQuery(
                time_zone=update.time_zone,
                period=point.start_period,
                entity_address=point.entity_address,
            )
            for _ in range(8)
        ]
        answers = await asyncio.gather(*(a.request(q, to=CRO, timeout=30) for q in queries))

        assert [r.result for r in answers] == [Result.ACCEPTED] * 8
        assert len({r.reference_message_id for r in answers}) == 8
        assert all(isinstance(r, DSOPortfolioQueryResponse) for r in answers)
        assert a.waiters.awaiting() == []
    finally:
        if a is not None:
            await a.stop()
        await cro.stop()


async def test_a_request_whose_delivery_another_process_ended_fails_where_it_waits(
    tmp_path: Path,
    site_keys: Path,
    pg_schema: str,
    counting_peer: CountingPeer,
    children: Processes,
) -> None:
    """request() waits in A; A's outbox stops holding the request (as when its claim lapses)
    and B takes its delivery over, which the peer refuses for good: the request fails in A
    with the outcome B recorded, instead of waiting for its timeout."""
    counting_peer.closed = True
    await children.serve("b", dso_config(tmp_path, site_keys, pg_schema, "b", counting_peer.url))
    a = participant_for(
        load_config(dso_config(tmp_path, site_keys, pg_schema, "a", counting_peer.url))
    )
    await a.start()
    try:
        waiting = asyncio.create_task(a.request(portfolio_update(0, 1), to=CRO, timeout=30))
        await until(lambda: counting_peer.posts >= 1, 10, "A trying")
        await a.outbox.stop()  # A delivers no more ...
        await a.store.release_claims()  # ... and holds nothing: B's to take
        counting_peer.closed, counting_peer.refusing = False, True

        with pytest.raises(DeliveryFailed) as failed:
            await asyncio.wait_for(waiting, 20)

        assert failed.value.result.status == 400
        assert failed.value.status is OutboundStatus.FAILED
    finally:
        await a.stop()


async def test_what_a_killed_process_left_unhandled_is_handled_once_by_another(
    tmp_path: Path, site_keys: Path, pg_schema: str, children: Processes
) -> None:
    """Two CRO processes on one store; the DSO posts its burst to the first, which runs the
    store's recovery and is SIGKILLed while messages it acknowledged wait to be handled. The
    second takes the recovery over when the first's connection ends, and handles them once
    their claims lapse; the responses the first had queued go out from the second. Then the
    first comes back, for the DSO's requests still pending (the DSO knows its address only):
    every update is applied once and answered once."""
    dso_port, first_port, second_port = free_port(), free_port(), free_port()
    dso_url = f"http://127.0.0.1:{dso_port}/shapeshifter/api/v3/message"
    cro_configs = [
        write_config(
            tmp_path / f"cro-{name}.toml",
            domain=CRO,
            role="CRO",
            key=site_keys / "cro.key",
            port=port,
            store=store_url(pg_schema),
            peer_domain=DSO,
            peer_role="DSO",
            peer_url=dso_url,
            peer_pub=site_keys / "dso.pub",
            extra='[cro]\nmode = "open"\ntime_zone = "Europe/Amsterdam"\n',
        )
        for name, port in (("first", first_port), ("second", second_port))
    ]
    dso_store = tmp_path / "dso.sqlite3"
    dso_config = write_config(
        tmp_path / "dso.toml",
        domain=DSO,
        role="DSO",
        key=site_keys / "dso.key",
        port=dso_port,
        store=f"sqlite:{dso_store}",
        peer_domain=CRO,
        peer_role="CRO",
        peer_url=f"http://127.0.0.1:{first_port}/shapeshifter/api/v3/message",
        peer_pub=site_keys / "cro.pub",
    )
    first = await children.serve("first", cro_configs[0])  # it takes the recovery
    second = await children.serve("second", cro_configs[1])
    argv = [sys.executable, "-m", "tests.resilience.dso_driver", "--config", str(dso_config)]
    now = datetime.now(UTC).isoformat()  # frozen: no update is older than one applied
    argv += ["--count", "30", "--connections", "800", "--time-stamp", now]
    dso = await children._start(Process("dso", argv, tmp_path / "dso.log"))
    await dso.until(lambda e: e["event"] == "progress" and e["delivered"] >= 2, 60)

    first.kill()
    await first.wait()
    left = await inbound_status(pg_schema)
    assert left["received"] >= 1, left  # acknowledged, not handled: the second's to handle

    await until(
        lambda: inbound_status(pg_schema, unhandled_only=True), 30, "the second handling them"
    )
    assert "taking over" in (tmp_path / "second.log").read_text()
    again = await children.serve("first-again", cro_configs[0])
    done = await dso.until(lambda e: e["event"] == "done", 120)
    assert done["requests"] == 30
    await dso.terminate()
    for process in (second, again):
        await process.terminate()

    conn = await asyncpg.connect(PG_DSN)
    try:
        applied = await conn.fetch(
            f"SELECT message_id, count(*) AS n FROM {pg_schema}.cro_update "
            "WHERE kind = 'dso' GROUP BY message_id"
        )
        answers = await conn.fetch(
            f"SELECT reference_message_id, count(*) AS n FROM {pg_schema}.outbound "
            "WHERE message_type = 'DSOPortfolioUpdateResponse' GROUP BY 1"
        )
    finally:
        await conn.close()
    assert len(applied) == 30 and {row["n"] for row in applied} == {1}
    assert len(answers) == 30 and {row["n"] for row in answers} == {1}
    with open_read_only(dso_store) as read:
        sender = read_sender(read)
    assert sender.delivered == 30
    assert Counter(sender.answers().values()) == Counter({1: 30})
    assert {result for _, result, _ in sender.responses.values()} == {Result.ACCEPTED}
