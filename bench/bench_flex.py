"""Large flex messages on the wire path: this adapter against shapeshifter-uftp 2.4.

    python bench/bench_flex.py [--repeat N] [--messages settlement,metering,portfolio]
        [--scale F] [--no-memory]

Times open+parse+validate of one signed inner message, as bench_wire.py row (a) does, for:

- settlement: a FlexSettlement with 10,000 FlexOrderSettlements of 4 ISPs each (and the one
  ContractSettlement every Version's XSD requires);
- metering: a Metering message holding 100 Profiles of 35,040 ISPs (a year of 15-minute
  ISPs for each of 100 connections: 3,504,000 values). The XSD allows it (Profile and ISP are
  unbounded), though a Metering message names one EAN and one Period, a day: the spec's rules
  would have 96 ISPs a profile. It is the size the project's target names;
- portfolio: the 100 x 1,000 DSOPortfolioUpdate of bench_wire.py, for its time and memory.

Ours: `open_sealed` + `decode` with `adapter.bulk.LARGE_MESSAGES` (signature check, hardened
parse, XSD validation of the message's Version, typed models; all three messages are
validated without any tree, then read from their bytes: the settlement's and the metering
message's ISP values kept as text, the portfolio a congestion point at a time). Theirs:
`transport.unseal_message` (signature check and xsdata parse, no XSD validation). The floor:
the libraries alone (signature check, hardened parse, XSD validation, no model). The repeats
alternate between the three; median and minimum of CPU time (`time.process_time`: all
threads of the process, so our validation thread counts) and of wall time are printed; the
verdict (ours <= 1/10 of theirs) is judged on the CPU medians. Since ours makes the rows
of a large message's ISPs when asked for, what making every one of them costs afterwards is
printed beside the verdict.

Memory: each side reads each message once in a fresh process of its own (this script with
`--child`), keeping the result alive, and reports the growth of its peak RSS (VmHWM) over
what it had after its imports and reading the signed bytes, so the tree, the models and
every temporary count. Verdict: ours no higher than theirs.

`--scale 0.1` divides the counts by ten, for a quick look (the verdicts then say little).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from base64 import b64encode
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from shapeshifter_uftp import transport

from adapter.bulk import LARGE_MESSAGES
from adapter.interop.shapeshifter import from_shapeshifter
from adapter.keys import generate
from adapter.uftp import (
    ContractSettlement,
    ContractSettlementISP,
    ContractSettlementPeriod,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    FlexOrderSettlement,
    FlexOrderSettlementISP,
    FlexSettlement,
    Metering,
    MeteringISP,
    MeteringProfile,
    MeteringProfileEnum,
    MeteringUnit,
    PayloadMessage,
    RedispatchBy,
    Role,
    decode,
    encode,
    open_sealed,
    parse_envelope,
    seal,
)
from adapter.uftp.xml import SCHEMAS, parse_xml

logging.getLogger("shapeshifter-uftp").setLevel(logging.WARNING)

TARGET = 1 / 10
META: dict[str, Any] = {
    "version": "3.1.0",
    "time_stamp": datetime(2024, 6, 1, 8, 0, tzinfo=UTC),
    "message_id": "5f0c2a7e-3b1d-4c5e-8f9a-0b1c2d3e4f50",
    "conversation_id": "5f0c2a7e-3b1d-4c5e-8f9a-0b1c2d3e4f51",
}
DSO, AGR, CRO = "dso.example.com", "agr.example.com", "cro.example.org"
MAY = date(2024, 5, 1)


def settlement(scale: float) -> FlexSettlement:
    orders = max(1, round(10_000 * scale))
    return FlexSettlement(
        **META,
        sender_domain=DSO,
        recipient_domain=AGR,
        period_start=MAY,
        period_end=date(2024, 5, 31),
        currency="EUR",
        flex_order_settlements=tuple(
            FlexOrderSettlement(
                order_reference=f"6a1b2c3d-4e5f-4a6b-8c7d-{n:012d}",
                period=MAY + timedelta(days=n % 31),
                congestion_point=f"ean.87168590{n % 100:010d}",
                price=Decimal(f"{n % 500}.{n % 100:02d}"),
                net_settlement=Decimal(f"{n % 500}.{n % 100:02d}"),
                isps=tuple(
                    FlexOrderSettlementISP(
                        start=33 + i,
                        baseline_power=1_000_000 + n,
                        ordered_flex_power=-200_000,
                        actual_power=800_000 + n + i,
                        delivered_flex_power=-200_000 + i,
                    )
                    for i in range(4)
                ),
            )
            for n in range(orders)
        ),
        contract_settlements=(
            ContractSettlement(
                contract_id="contract-1",
                periods=(
                    ContractSettlementPeriod(
                        period=MAY, isps=(ContractSettlementISP(start=1, reserved_power=500),)
                    ),
                ),
            ),
        ),
    )


def metering(scale: float) -> Metering:
    connections = max(1, round(100 * scale))
    isps = 35_040
    return Metering(
        **META,
        sender_domain=AGR,
        recipient_domain=DSO,
        revision=1,
        isp_duration=timedelta(minutes=15),
        time_zone="Europe/Amsterdam",
        period=MAY,
        ean="E8716859000000001",
        profiles=tuple(
            MeteringProfile(
                profile_type=MeteringProfileEnum.POWER,
                unit=MeteringUnit.KW,
                isps=tuple(
                    MeteringISP(i + 1, Decimal(f"{(i * 7 + c) % 1000}.{i % 1000:03d}"))
                    for i in range(isps)
                ),
            )
            for c in range(connections)
        ),
    )


def portfolio(scale: float) -> DSOPortfolioUpdate:
    connections = max(1, round(1_000 * scale))
    return DSOPortfolioUpdate(
        **META,
        sender_domain=DSO,
        recipient_domain=CRO,
        time_zone="Europe/Amsterdam",
        congestion_points=tuple(
            DSOPortfolioUpdateCongestionPoint(
                entity_address=f"ean.87168590{p:010d}",
                start_period=MAY,
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                connections=tuple(
                    DSOPortfolioUpdateConnection(f"ean.8716859{p:05d}{n:07d}", MAY)
                    for n in range(connections)
                ),
            )
            for p in range(100)
        ),
    )


MESSAGES: dict[str, tuple[Callable[[float], PayloadMessage], str, Role]] = {
    "settlement": (settlement, DSO, Role.DSO),
    "metering": (metering, AGR, Role.AGR),
    "portfolio": (portfolio, DSO, Role.DSO),
}


def side(name: str, body: bytes, public: bytes) -> Callable[[], object]:
    """One side's open+parse+validate of `body`: "ours", "theirs" or "floor"."""
    if name == "ours":
        return lambda: decode(open_sealed(body, [public]), bulk=LARGE_MESSAGES)
    if name == "theirs":
        their_public = b64encode(public).decode("ascii")
        return lambda: transport.unseal_message(body, their_public)
    schema = SCHEMAS.for_version(META["version"])

    def floor() -> object:
        root = parse_xml(open_sealed(body, [public]))
        schema.validate_root(root)
        return root

    return floor


def _peak_kib() -> int:
    """This process's peak resident set, KiB. VmHWM, not ru_maxrss: Linux carries the
    ru_maxrss of the process that forked this one across the exec, VmHWM starts afresh."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(side_name: str, path: str, public_hex: str) -> None:
    """Read the signed body at `path` once as `side_name`; print the peak RSS growth (KiB)
    and the times as JSON."""
    with open(path, "rb") as file:
        body = file.read()
    operation = side(side_name, body, bytes.fromhex(public_hex))
    gc.collect()
    before = _peak_kib()
    cpu, wall = time.process_time(), time.perf_counter()
    result = operation()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = _peak_kib()
    print(json.dumps({"rss_kib": peak - before, "cpu": cpu, "wall": wall}))
    del result


def memory(side_name: str, path: str, public: bytes) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", side_name, path, public.hex()],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def fmt(seconds: float) -> str:
    return f"{seconds:7.3f} s" if seconds >= 1 else f"{seconds * 1e3:7.1f} ms"


def bench(name: str, scale: float, repeat: int, with_memory: bool, with_time: bool) -> list[bool]:
    build, sender, role = MESSAGES[name]
    model = build(scale)
    inner = encode(model)
    pair = generate()
    public = pair.public.signing
    body = parse_envelope(seal(inner, pair.signing, sender, role)).sealed
    del inner
    sides = ["ours", "theirs", "floor"]
    print(f"{name}: signed body {len(body):,} B")
    verdicts = []
    if with_time:
        verdicts.append(time_sides(model, body, public, sides, repeat))
    del model
    if with_memory:
        with tempfile.NamedTemporaryFile(suffix=".signed") as file:
            file.write(body)
            file.flush()
            used = {s: memory(s, file.name, public) for s in sides}
        verdicts.append(used["ours"]["rss_kib"] <= used["theirs"]["rss_kib"])
        print(
            "  peak RSS growth, fresh process each: "
            + ", ".join(f"{s} {used[s]['rss_kib'] / 1024:,.0f} MiB" for s in sides)
            + f"  ours <= theirs: {'PASS' if verdicts[-1] else 'FAIL'}"
        )
    return verdicts


def every_row(message: object) -> int:
    """Make every ISP row of `message` (and each Decimal value), as a reader of them all
    would; the number of rows."""
    if isinstance(message, Metering):
        return sum(sum(1 for _ in profile.isps) for profile in message.profiles)
    if isinstance(message, FlexSettlement):
        return sum(len(tuple(order.isps)) for order in message.flex_order_settlements)
    return 0


def time_sides(
    model: PayloadMessage, body: bytes, public: bytes, sides: list[str], repeat: int
) -> bool:
    """Check both sides read `model` from `body`, time the `sides` in interleaved repeats,
    print the table; whether ours is within the target."""
    operations = [side(s, body, public) for s in sides]
    # Both sides read the same content (checked once, untimed).
    ours_result = operations[0]()
    assert ours_result == model, "ours differs from the message sent"
    theirs_result = operations[1]()
    assert from_shapeshifter(theirs_result) == model, "theirs differs from the message sent"
    del ours_result, theirs_result
    cpu: list[list[float]] = [[] for _ in sides]
    wall: list[list[float]] = [[] for _ in sides]
    for _ in range(repeat):
        for operation, cpus, walls in zip(operations, cpu, wall, strict=True):
            gc.collect()
            c, w = time.process_time(), time.perf_counter()
            operation()
            cpus.append(time.process_time() - c)
            walls.append(time.perf_counter() - w)
    print(f"  {repeat} interleaved repeats")
    for label, cpus, walls in zip(sides, cpu, wall, strict=True):
        print(
            f"  {label:<7} CPU median {fmt(statistics.median(cpus))} min {fmt(min(cpus))}"
            f"  max {fmt(max(cpus))} | wall median {fmt(statistics.median(walls))}"
            f" min {fmt(min(walls))}"
        )
    # Large messages keep their ISPs as text (Metering values, FlexOrderSettlement rows) and
    # make rows when asked for: what asking for every one of them costs, once, untimed above.
    result = operations[0]()
    c = time.process_time()
    rows = every_row(result)
    print(f"  ours, then every ISP row made once: {rows:,} rows, {fmt(time.process_time() - c)}")
    del result
    ratio = statistics.median(cpu[0]) / statistics.median(cpu[1])
    floor = statistics.median(cpu[2]) / statistics.median(cpu[1])
    print(
        f"  ours/theirs CPU (medians) {ratio:.3f}, min {min(cpu[0]) / min(cpu[1]):.3f};"
        f" wall {statistics.median(wall[0]) / statistics.median(wall[1]):.3f};"
        f" floor/theirs {floor:.3f}  <= 1/10: {'PASS' if ratio <= TARGET else 'FAIL'}"
    )
    return ratio <= TARGET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per side")
    parser.add_argument("--messages", default="settlement,metering,portfolio")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the counts")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory children")
    parser.add_argument("--no-time", action="store_true", help="skip the check and timing")
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "FILE", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    names = args.messages.split(",")
    if args.repeat < 1 or not set(names) <= set(MESSAGES):
        parser.error(f"--repeat at least 1, --messages among {', '.join(MESSAGES)}")
    print(
        f"Python {sys.version.split()[0]}, scale {args.scale}, load average"
        f" {os.getloadavg()[0]:.1f} at start"
    )
    started = time.perf_counter()
    verdicts = []
    for name in names:
        verdicts += bench(name, args.scale, args.repeat, not args.no_memory, not args.no_time)
    passed = all(verdicts)
    print(
        f"Targets: {'PASS' if passed else 'FAIL'}  (total {time.perf_counter() - started:.0f} s,"
        f" load average {os.getloadavg()[0]:.1f} at end)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
