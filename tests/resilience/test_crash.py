"""Crash safety: a CRO and a DSO as separate OS processes, one of them killed with SIGKILL.

The DSO (`dso_driver`) queues a burst of portfolio updates with `send()` and waits for their
responses; the CRO is ``python -m adapter serve``. At a chosen point of the exchange one of
them gets SIGKILL - no handler, no flush - and is started again on the same SQLite file.
Once every request is answered both stop, and the two store files are read (read-only) for
what a user relies on:

* nothing acknowledged is lost: every request the DSO's `send()` returned for is in its
  outbox, delivered, stored by the CRO (which answered it 200) and handled;
* nothing is done twice: each request is applied to the register exactly once (one
  ``cro_update`` row, one version of its congestion point, its connections stored once) and
  answered by exactly one response, which the DSO stored exactly once;
* every response was delivered and says Accepted.

A kill point is a moment of the exchange, seen in the driver's progress lines, and a window:
the state the stores must show right after the kill for the point to count as hit (say, the
CRO had acknowledged requests it had not handled yet). A kill that missed its window is
checked all the same and then tried again, a bounded number of times.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest

from adapter.uftp.messages import Result
from tests.resilience.harness import (
    DSO_DOMAIN,
    Site,
    cro_process,
    dso_process,
    write_keys,
    write_site,
)
from tests.resilience.stores import (
    CroView,
    SenderView,
    open_read_only,
    read_cro,
    read_cro_response_results,
    read_sender,
)
from tests.serve import Event, Process

#: Updates in the burst, connections in each (enough that handling one takes a while).
BURST = 40
CONNECTIONS = 800
#: Tries per scenario until its kills hit their windows.
MAX_TRIES = 4
#: Bounds on each wait, in seconds.
START_TIMEOUT = 20.0
TRIGGER_TIMEOUT = 20.0
FINISH_TIMEOUT = 45.0


@dataclass(frozen=True)
class Snapshot:
    """Both stores, read right after a kill (the killed one as it was left)."""

    sender: SenderView
    cro: CroView


@dataclass(frozen=True)
class Kill:
    victim: Literal["cro", "dso"]
    #: The moment, as the driver's progress events show it.
    trigger: Callable[[Event], bool]
    #: The state the stores must show for the kill to have hit its window.
    window: Callable[[Snapshot], bool]
    description: str
    #: SIGKILL (a crash) or SIGTERM (an operator's clean stop, which must lose nothing either).
    how: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"


@dataclass(frozen=True)
class Scenario:
    name: str
    kills: tuple[Kill, ...]
    #: The CRO is down until the first kill: every request is pending when it happens.
    cro_starts_late: bool = False


@dataclass
class Outcome:
    """One try of a scenario."""

    hits: list[bool] = field(default_factory=list)
    #: The signals actually sent (a moment the exchange passed by gets none).
    signals: list[str] = field(default_factory=list)
    checked: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Tally:
    kill_points: int = 0
    signals: Counter[str] = field(default_factory=Counter)
    hits: int = 0
    tries: int = 0
    messages: int = 0
    lines: list[str] = field(default_factory=list)


TALLY = Tally()


def progress(condition: Callable[[Event], bool]) -> Callable[[Event], bool]:
    return lambda event: event["event"] == "progress" and condition(event)


AFTER_FIRST_200S = Kill(
    "cro",
    progress(lambda e: e["delivered"] >= 2 and e["answered"] == 0),
    lambda s: s.cro.unfinished >= 1 and not s.sender.responses,
    "CRO killed right after its first 200s: requests acknowledged, not handled, none answered",
)
WHILE_HANDLERS_RUN = Kill(
    "cro",
    progress(lambda e: e["delivered"] >= BURST // 2 and e["answered"] >= 1),
    lambda s: s.cro.handled >= 1 and s.cro.unfinished >= 1,
    "CRO killed while handlers run: some requests handled, others acknowledged only",
)
WHILE_RESPONDING = Kill(
    "cro",
    progress(lambda e: e["delivered"] >= BURST // 2 and 1 <= e["answered"] < BURST),
    # Delivered as the DSO's store shows it: the CRO records a delivery only after the 200.
    lambda s: (
        1 <= len(s.sender.responses) < len(s.sender.requests)
        and any(status == "pending" for _, status, _ in s.cro.responses.values())
    ),
    "CRO killed while delivering responses: some stored by the DSO, others queued",
)
DSO_WITH_PENDING = Kill(
    "dso",
    progress(lambda e: e["requests"] == e["tried"] == BURST),
    lambda s: (
        s.sender.pending == len(s.sender.requests) == BURST
        and all(s.sender.attempts[m] >= 1 for m in s.sender.requests)
    ),
    "DSO killed with every request pending (CRO down, each tried at least once)",
)
DSO_MID_BURST = Kill(
    "dso",
    progress(lambda e: BURST // 2 <= e["requests"] < BURST and e["delivered"] >= 1),
    lambda s: s.sender.pending >= 1 and len(s.sender.requests) < BURST,
    "DSO killed in the middle of its burst: some requests delivered, some pending",
)
DSO_WHILE_ANSWERED = Kill(
    "dso",
    progress(lambda e: e["requests"] == BURST and 2 <= e["answered"] <= BURST - 8),
    lambda s: 1 <= len(s.sender.responses) < len(s.sender.requests),
    "DSO killed while responses arrive: some stored, the CRO must retry the others",
)

TERMINATED_WHILE_HANDLERS_RUN = Kill(
    "cro",
    progress(lambda e: e["delivered"] >= 8 and e["answered"] >= 1),
    # A clean stop finishes the handlers it started; their responses wait in the store.
    lambda s: (
        s.cro.unfinished == 0
        and any(status == "pending" for _, status, _ in s.cro.responses.values())
    ),
    "CRO stopped (SIGTERM) in the middle of the burst: every handler finished, responses "
    "left pending",
    how="SIGTERM",
)
DSO_TERMINATED_MID_BURST = Kill(
    "dso",
    DSO_MID_BURST.trigger,
    # A clean stop lets the POSTs on the wire return (Outbox.stop), so what it leaves is
    # recorded as it happened: delivered, or pending with its attempts counted.
    lambda s: len(s.sender.requests) < BURST,
    "DSO stopped (SIGTERM) in the middle of its burst",
    how="SIGTERM",
)

SCENARIOS = (
    Scenario("cro-after-first-200s", (AFTER_FIRST_200S,)),
    Scenario("cro-while-handlers-run", (WHILE_HANDLERS_RUN,)),
    Scenario("cro-while-responding", (WHILE_RESPONDING,)),
    Scenario("cro-killed-twice", (AFTER_FIRST_200S, WHILE_RESPONDING)),
    Scenario("dso-with-pending-requests", (DSO_WITH_PENDING,), cro_starts_late=True),
    Scenario("dso-mid-burst", (DSO_MID_BURST,)),
    Scenario("dso-while-responses-arrive", (DSO_WHILE_ANSWERED,)),
    Scenario("cro-terminated-mid-burst", (TERMINATED_WHILE_HANDLERS_RUN,)),
    Scenario("dso-terminated-mid-burst", (DSO_TERMINATED_MID_BURST,)),
)


def describe(shot: Snapshot) -> str:
    cro_statuses = Counter(status for _, status, _ in shot.cro.responses.values())
    return (
        f"DSO: {len(shot.sender.requests)} requests, {shot.sender.delivered} delivered, "
        f"{len(shot.sender.responses)} responses; CRO: {len(shot.cro.inbound)} received, "
        f"{shot.cro.handled} handled, responses {dict(cro_statuses)}"
    )


def or_done(trigger: Callable[[Event], bool]) -> Callable[[Event], bool]:
    return lambda event: trigger(event) or event["event"] == "done"


def snapshot(site: Site) -> Snapshot:
    with open_read_only(site.dso_store) as dso:
        sender = read_sender(dso)
    if not site.cro_store.exists():  # the CRO has not run yet
        return Snapshot(sender, CroView())
    with open_read_only(site.cro_store) as cro:
        return Snapshot(sender, read_cro(cro))


def invariant_violations(site: Site, sent: set[str]) -> tuple[list[str], int]:
    """What the final stores show wrong, and how many requests were checked."""
    with open_read_only(site.dso_store) as dso_conn, open_read_only(site.cro_store) as cro_conn:
        dso = read_sender(dso_conn)
        cro = read_cro(cro_conn)
        results = read_cro_response_results(cro_conn)
    problems: list[str] = []

    def expect(condition: bool, problem: str) -> None:
        if not condition:
            problems.append(problem)

    requests = set(dso.requests)
    expect(sent <= requests, f"send() returned but not in the outbox: {sorted(sent - requests)}")
    expect(bool(requests), "no requests at all")
    undelivered = {m: s for m, s in dso.requests.items() if s != "delivered"}
    expect(not undelivered, f"requests not delivered: {undelivered}")

    received = {message_id for (sender, message_id) in cro.inbound if sender == DSO_DOMAIN}
    expect(received == requests, f"CRO inbound != DSO requests: {received ^ requests}")
    unhandled = [key for key, status in cro.inbound.items() if status != "handled"]
    expect(not unhandled, f"acknowledged but never handled: {unhandled}")

    cro_answers = cro.answers()
    wrong = {m: cro_answers[m] for m in requests | set(cro_answers) if cro_answers[m] != 1}
    expect(not wrong, f"CRO responses per request (want exactly 1): {wrong}")
    undelivered_responses = [
        m for m, (_, status, _) in cro.responses.items() if status != "delivered"
    ]
    expect(not undelivered_responses, f"responses not delivered: {undelivered_responses}")
    not_accepted = {m: r for m, r in results.items() if r is not Result.ACCEPTED}
    expect(not not_accepted, f"responses not Accepted: {not_accepted}")

    applied = {m: n for (sender, m), n in cro.applied.items() if sender == DSO_DOMAIN}
    wrong_applied = {m: applied.get(m, 0) for m in requests | set(applied) if applied.get(m) != 1}
    expect(not wrong_applied, f"cro_update rows per request (want exactly 1): {wrong_applied}")
    versions = {a: n for a, n in cro.point_versions.items() if n != 1}
    expect(not versions, f"congestion points stored more than once: {versions}")
    expect(
        len(cro.point_versions) == len(requests),
        f"{len(cro.point_versions)} congestion points for {len(requests)} updates",
    )
    expect(
        cro.connection_rows == cro.current_connections == len(requests) * CONNECTIONS,
        f"{cro.connection_rows} connection rows, {cro.current_connections} current, "
        f"want {len(requests) * CONNECTIONS}",
    )

    dso_answers = dso.answers()
    wrong = {m: dso_answers[m] for m in requests | set(dso_answers) if dso_answers[m] != 1}
    expect(not wrong, f"responses the DSO stored per request (want exactly 1): {wrong}")
    foreign = {
        m: ref
        for m, (ref, _, _) in dso.responses.items()
        if m not in cro.responses or cro.responses[m][0] != ref
    }
    expect(not foreign, f"DSO responses the CRO did not send for that request: {foreign}")
    unhandled_responses = [m for m, (_, _, status) in dso.responses.items() if status != "handled"]
    expect(not unhandled_responses, f"responses the DSO did not handle: {unhandled_responses}")
    return problems, len(requests)


async def settle(site: Site, timeout: float) -> None:
    """Wait until the CRO has handled everything and recorded every response as delivered."""
    async with asyncio.timeout(timeout):
        while True:
            with open_read_only(site.cro_store) as conn:
                cro = read_cro(conn)
            if cro.unfinished == 0 and all(
                status == "delivered" for _, status, _ in cro.responses.values()
            ):
                return
            await asyncio.sleep(0.05)


async def run_once(scenario: Scenario, site: Site) -> Outcome:
    outcome = Outcome()
    processes: list[Process] = []
    runs = {"cro": 0, "dso": 0}
    # Every update's TimeStamp, across restarts of the DSO (see dso_driver: the CRO must not
    # see one as out of order). Now, so that it is within the CRO's TimeStamp bounds.
    time_stamp = datetime.now(UTC).isoformat()

    async def start(victim: Literal["cro", "dso"]) -> Process:
        runs[victim] += 1
        if victim == "cro":
            process = cro_process(site, runs["cro"])
            await process.start()
            await process.until_line(lambda line: line.startswith("serving"), START_TIMEOUT)
        else:
            count = BURST if runs["dso"] == 1 else 0
            process = dso_process(
                site, runs["dso"], count=count, connections=CONNECTIONS, time_stamp=time_stamp
            )
            await process.start()
            await process.until(lambda e: e["event"] == "started", START_TIMEOUT)
        processes.append(process)
        return process

    try:
        cro = None if scenario.cro_starts_late else await start("cro")
        dso = await start("dso")
        mark = 0
        for kill in scenario.kills:
            # Only what the driver reported since the last restart counts. If the exchange
            # finishes before the moment comes, the moment was missed: no kill this time.
            seen = await dso.until(or_done(kill.trigger), TRIGGER_TIMEOUT, since=mark)
            if seen["event"] == "done":
                outcome.hits.append(False)
                continue
            victim = cro if kill.victim == "cro" else dso
            assert victim is not None
            outcome.signals.append(kill.how)
            if kill.how == "SIGKILL":
                victim.kill()
                await victim.wait()
            else:
                assert await victim.terminate() == 0
            shot = snapshot(site)
            outcome.hits.append(kill.window(shot))
            if not outcome.hits[-1]:
                outcome.notes.append(f"missed at {describe(shot)}")
            if kill.victim == "cro" and shot.cro.applied_unfinished():
                # Killed between the register's commit and the one marking the message
                # handled: recovery runs the handler again, which must not apply it twice.
                outcome.notes.append(
                    f"killed with {shot.cro.applied_unfinished()} applied to the register "
                    "but not marked handled"
                )
            if kill.victim == "cro":
                cro = await start("cro")
            else:
                if cro is None:
                    cro = await start("cro")
                dso = await start("dso")
            mark = len(dso.events)
        await dso.until(lambda e: e["event"] == "done", FINISH_TIMEOUT)
        await settle(site, FINISH_TIMEOUT)
        assert await dso.terminate() == 0
        assert cro is not None and await cro.terminate() == 0
    finally:
        for process in processes:
            await process.ensure_dead()
    sent = {
        str(event["message_id"])
        for process in processes
        for event in process.events
        if event["event"] == "sent"
    }
    problems, outcome.checked = invariant_violations(site, sent)
    assert not problems, f"{scenario.name} (stores in {site.root}):\n" + "\n".join(problems)
    return outcome


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_killed_participant_loses_nothing_and_does_nothing_twice(
    scenario: Scenario, keys: Path, tmp_path: Path
) -> None:
    for attempt in range(1, MAX_TRIES + 1):
        outcome = await run_once(scenario, write_site(tmp_path / f"try-{attempt}", keys))
        TALLY.tries += 1
        TALLY.kill_points += len(outcome.hits)
        TALLY.signals.update(outcome.signals)
        TALLY.hits += sum(outcome.hits)
        TALLY.messages += outcome.checked
        if all(outcome.hits):
            break
    TALLY.lines.append(
        f"{scenario.name}: {attempt} tries, {outcome.checked} messages in the last; "
        + "; ".join(k.description for k in scenario.kills)
        + (f" [{', '.join(outcome.notes)}]" if outcome.notes else "")
    )
    missed = [k.description for k, hit in zip(scenario.kills, outcome.hits, strict=True) if not hit]
    assert not missed, f"no try of {MAX_TRIES} hit the window: {missed}"
