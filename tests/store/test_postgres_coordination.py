"""What the processes of one PostgreSQL store coordinate besides rows, on a real server.

Each `PostgresCoordinator` here stands for one process: its own session connection, as each
process has. A process dying is its session connection ending, which the server sees at once
when the kernel closes a killed process's socket; `pg_terminate_backend` does the same to a
live process's connection (the case of a network cut), which must then be made again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.postgres import import_asyncpg

asyncpg = import_asyncpg()

from adapter.store.postgres import PostgresStore  # noqa: E402
from adapter.store.postgres_coordination import PostgresCoordinator  # noqa: E402
from tests.postgres import PG_DSN, fresh_schema  # noqa: E402


class Process:
    """A store and its coordinator, as one process of a shared store has them."""

    def __init__(self, schema: str) -> None:
        self.store = PostgresStore(PG_DSN, schema=schema)
        coordinator = self.store.coordinator()
        assert isinstance(coordinator, PostgresCoordinator)
        self.coordinator = coordinator

    async def start(self) -> None:
        await self.store.open()
        await self.coordinator.start()

    async def close(self) -> None:
        await self.coordinator.close()
        await self.store.close()

    async def session_pid(self) -> int:
        """The server process of this coordinator's own connection."""
        conn = self.coordinator._session._conn  # the connection a kill would end
        assert conn is not None
        return int(conn.get_server_pid())


@pytest.fixture
async def processes() -> AsyncIterator[list[Process]]:
    async with fresh_schema("test_coord") as schema:
        started = [Process(schema.name) for _ in range(3)]
        try:
            for process in started:
                await process.start()
            yield started
        finally:
            for process in started:
                await process.close()


async def terminate(process: Process) -> None:
    """End the process's session connection from the server's side."""
    admin = await asyncpg.connect(PG_DSN)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", await process.session_pid())
    finally:
        await admin.close()


async def eventually(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- the singleton ----------------------------------------------------------------------------


async def test_one_process_holds_a_singleton_and_another_takes_it_when_it_ends(
    processes: list[Process],
) -> None:
    a, b, c = processes
    first, second, third = (p.coordinator.singleton("recovery") for p in processes)

    assert await first.try_acquire() is True
    assert await second.try_acquire() is False
    assert await third.try_acquire() is False
    assert await first.try_acquire() is True  # still held, not taken twice
    # Another task of the same store is another lock.
    assert await b.coordinator.singleton("relay").try_acquire() is True

    await a.coordinator.close()  # the process stopped: its connection ended
    assert await second.try_acquire() is True
    assert await third.try_acquire() is False
    assert first.held is False


async def test_a_singleton_is_lost_with_the_connection_and_can_be_taken_again(
    processes: list[Process],
) -> None:
    a, b, _ = processes
    first, second = a.coordinator.singleton("recovery"), b.coordinator.singleton("recovery")
    assert await first.try_acquire() is True

    await terminate(a)  # a network cut: the server released a's locks

    await eventually(lambda: asyncio.sleep(0, not first.held))
    assert await second.try_acquire() is True
    await eventually(lambda: asyncio.sleep(0, a.coordinator._session.connected))  # made again
    assert await first.try_acquire() is False  # b has it now


# -- peer slots -------------------------------------------------------------------------------


async def test_the_per_peer_cap_holds_across_processes(processes: list[Process]) -> None:
    """Three processes, a cap of 2 per peer server: never more than 2 holders of one key at
    once (each process alone would allow 2), while another key has its own slots."""
    slots = [p.coordinator.peer_slots(2) for p in processes]
    inside = {"https://a.test": 0, "https://b.test": 0}
    most = dict.fromkeys(inside, 0)

    async def deliver(n: int) -> None:
        key = "https://a.test" if n % 4 else "https://b.test"
        async with slots[n % 3].hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            await asyncio.sleep(0.02)
            inside[key] -= 1

    await asyncio.gather(*(deliver(n) for n in range(36)))

    assert most == {"https://a.test": 2, "https://b.test": 2}


async def test_a_dead_process_gives_its_peer_slot_back(processes: list[Process]) -> None:
    a, b, _ = processes
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold_forever() -> None:
        async with a.coordinator.peer_slots(1).hold("https://a.test"):
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold_forever())
    await held.wait()
    waiting = asyncio.create_task(_enter(b.coordinator.peer_slots(1), "https://a.test"))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # the one slot is a's

    await terminate(a)

    await asyncio.wait_for(waiting, 5)  # the server released a's lock with its connection
    release.set()
    await holder


async def _enter(slots: Any, key: str) -> None:
    async with slots.hold(key):
        pass


async def test_no_cap_takes_no_lock(processes: list[Process]) -> None:
    slots = processes[0].coordinator.peer_slots(None)
    async with slots.hold("https://a.test"), slots.hold("https://a.test"):
        pass


# -- the notifier -----------------------------------------------------------------------------


async def test_a_notification_reaches_every_process_and_a_gap_is_reported(
    processes: list[Process],
) -> None:
    a, b, c = processes
    heard: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    gaps: list[str] = []
    for name, process in zip("abc", processes, strict=True):
        assert process.coordinator.notifier is not None
        process.coordinator.notifier.subscribe(
            heard[name].append, lambda name=name: gaps.append(name)
        )

    assert a.coordinator.notifier is not None
    await a.coordinator.notifier.notify('{"response":"r1"}')
    await eventually(lambda: asyncio.sleep(0, all(heard.values())))
    assert heard == {name: ['{"response":"r1"}'] for name in "abc"}

    await terminate(c)
    await eventually(lambda: asyncio.sleep(0, gaps == ["c"]))  # c is back, and says so
    await a.coordinator.notifier.notify("after")
    await eventually(lambda: asyncio.sleep(0, heard["c"][-1:] == ["after"]))


async def _peer_locks(process: Process) -> int:
    """Advisory locks the session connection of `process` holds now."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            await process.session_pid(),
        )
    finally:
        await conn.close()
    return int(count)


async def test_a_slot_given_back_stays_parked_then_goes_back_to_the_server(
    processes: list[Process],
) -> None:
    """A POST's slot stays this process's for SLOT_LINGER after it ends, so that the next POST
    to that peer takes it without two round trips; then it is the server's again."""
    from adapter.store.postgres_coordination import SLOT_LINGER

    a, b, _ = processes
    slots = a.coordinator.peer_slots(1)
    await _enter(slots, "https://a.test")
    assert await _peer_locks(a) == 1  # parked, still locked
    took = asyncio.get_running_loop().time()
    await _enter(slots, "https://a.test")  # taken from the park: no second lock asked for
    assert await _peer_locks(a) == 1

    await asyncio.wait_for(_enter(b.coordinator.peer_slots(1), "https://a.test"), 5)
    assert asyncio.get_running_loop().time() - took >= SLOT_LINGER  # b waited for the park
    await eventually(lambda: _no_locks(a))


async def _no_locks(process: Process) -> bool:
    return await _peer_locks(process) == 0


async def test_slots_due_together_go_back_to_the_server_in_one_round_trip(
    processes: list[Process],
) -> None:
    """Three slots of two peers parked at once go back to the server in one statement on the
    session connection (one each made a round trip per delivery under load), all of them:
    another process can then take the whole cap of both peers."""
    a, b, _ = processes
    session = a.coordinator._session
    asked: list[str] = []
    fetchval = session.fetchval

    async def counting(sql: str, *args: Any) -> tuple[Any, int]:
        asked.append(sql)
        return await fetchval(sql, *args)

    session.fetchval = counting  # type: ignore[method-assign]
    slots = a.coordinator.peer_slots(2)
    inside = asyncio.Barrier(3)

    async def deliver(key: str) -> None:
        async with slots.hold(key):
            await inside.wait()  # all three held at once: three slots taken

    await asyncio.gather(
        deliver("https://a.test"), deliver("https://a.test"), deliver("https://b.test")
    )
    assert await _peer_locks(a) == 3  # parked
    taken = len(asked)
    assert taken == 3

    await eventually(lambda: _no_locks(a))
    assert len(asked) - taken == 1  # one statement gave all three back
    others = b.coordinator.peer_slots(2)
    async with (
        others.hold("https://a.test"),
        others.hold("https://a.test"),
        others.hold("https://b.test"),
        others.hold("https://b.test"),
    ):
        assert await _peer_locks(b) == 4
    assert slots._taken == {}  # a forgot them: it would ask the server afresh


async def test_a_slot_is_found_in_one_round_trip_when_others_hold_most(
    processes: list[Process],
) -> None:
    """With 14 of 16 slots held by another process, each of two processes takes one of the
    other two in one statement (one round trip per slot tried, before: up to 15 of them),
    and the cap is then full for all three."""
    a, b, c = processes
    asked: list[str] = []
    for process in (a, c):
        session = process.coordinator._session
        fetchval = session.fetchval

        async def counting(sql: str, *args: Any, fetchval: Any = fetchval) -> tuple[Any, int]:
            asked.append(sql)
            return await fetchval(sql, *args)

        session.fetchval = counting  # type: ignore[method-assign]
    key = "https://a.test"
    holding, release = asyncio.Barrier(15), asyncio.Event()

    async def hold(slots: Any) -> None:
        async with slots.hold(key):
            await holding.wait()
            await release.wait()

    b_slots = b.coordinator.peer_slots(16)
    holders = [asyncio.create_task(hold(b_slots)) for _ in range(14)]
    await holding.wait()  # b holds 14
    assert await _peer_locks(b) == 14

    a_slots, c_slots = a.coordinator.peer_slots(16), c.coordinator.peer_slots(16)
    async with a_slots.hold(key), c_slots.hold(key):
        assert len(asked) == 2
        assert (await _peer_locks(a), await _peer_locks(c)) == (1, 1)
        third = asyncio.create_task(_enter(a_slots, key))
        await asyncio.sleep(0.3)
        assert not third.done()  # all 16 are taken
    release.set()
    await asyncio.gather(*holders)
    await asyncio.wait_for(third, 5)


async def test_a_take_cancelled_while_its_statement_runs_leaves_no_slot_locked(
    processes: list[Process],
) -> None:
    """A POST cancelled while its slot is being asked for (its delivery stopped, say): the
    statement, sent already, takes a slot on the server all the same. That slot must go back,
    or it stays locked - the cap of every process one lower - for as long as this process's
    session connection lives."""
    a, b, _ = processes
    slots = a.coordinator.peer_slots(2)
    await _enter(slots, "https://a.test")  # the statement is prepared on the connection now
    await eventually(lambda: _no_locks(a))

    taking = asyncio.create_task(_enter(slots, "https://a.test"))
    await _statement_in_flight(a)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking

    await eventually(lambda: _no_locks(a))
    other = b.coordinator.peer_slots(2)
    async with asyncio.timeout(5), other.hold("https://a.test"), other.hold("https://a.test"):
        pass  # the whole cap, for another process


async def _statement_in_flight(process: Process) -> None:
    """Until a statement runs on the session connection (it holds the connection's lock)."""
    session = process.coordinator._session
    async with asyncio.timeout(5):
        # Polled at every turn of the loop: the statement runs for well under a millisecond.
        while not session._lock.locked():  # noqa: ASYNC110 - no event says it
            await asyncio.sleep(0)


async def test_a_slot_a_cancelled_take_got_is_not_taken_twice_by_this_process(
    processes: list[Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A take cancelled while its statement runs, and another take right behind it on the
    session connection: the statement of the first gets a slot, and the second must not get
    the same one (the server grants a session its own advisory lock again). Were it granted,
    the first's slot going back would unlock it once, this process would count it free while
    its second take holds it, and a third take would hold it too: three POSTs here, and the
    other slot still free for another process, under a cap of 2."""
    a, b, _ = processes
    monkeypatch.setattr(
        "adapter.store.postgres_coordination.random.randrange", lambda limit: 0
    )  # every take tries slot 0 first
    slots = a.coordinator.peer_slots(2)
    key = "https://a.test"
    await _enter(slots, key)  # the statement is prepared on the connection now
    await eventually(lambda: _no_locks(a))

    cancelled = asyncio.create_task(_enter(slots, key))
    await _statement_in_flight(a)
    release = asyncio.Event()
    second_in, third_in = asyncio.Event(), asyncio.Event()

    async def deliver(inside: asyncio.Event) -> None:
        async with slots.hold(key):
            inside.set()
            await release.wait()

    second = asyncio.create_task(deliver(second_in))
    await asyncio.sleep(0)  # it asks behind the cancelled take's statement
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    async with asyncio.timeout(5):
        await second_in.wait()
    while slots._unlocking:  # the cancelled take's slot went back
        await asyncio.gather(*slots._unlocking)
    third = asyncio.create_task(deliver(third_in))
    async with asyncio.timeout(5):
        await third_in.wait()

    other = asyncio.create_task(_enter(b.coordinator.peer_slots(2), key))
    await asyncio.sleep(0.5)
    assert not other.done(), "a slot of this process was counted twice: the cap exceeded"
    release.set()
    await asyncio.gather(second, third)
    await asyncio.wait_for(other, 5)
