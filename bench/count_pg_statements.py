"""Statements per round trip that a DSO and a CRO on PostgreSQL send to the server.

    .venv/bin/python bench/count_pg_statements.py [--seconds 6] [--baseline DIR]

Both participants run in this one process (bench_workers.py's, cap of 16 per peer, 10 x 10
updates at concurrency 16), each on a schema of its own; every statement asyncpg sends is
counted by its text, after a second of warm-up, over `--seconds`. Printed: the round trips,
the statements per round trip by text, and those on the coordination's session connection
(the advisory-lock slots of the per-peer cap). The counts, unlike CPU time, hardly depend on
the load of the machine, except through the round trips per second: the session's slots are
taken and given back as the number of POSTs in flight changes, about as often each second
whatever the throughput. `--baseline DIR` runs the `adapter` of DIR instead (one checkout per
run: run it twice, interleaved, to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
import uuid
from pathlib import Path
from typing import Any


async def _run(seconds: float) -> None:
    import asyncpg
    import asyncpg.connection
    import bench_workers as bw

    from adapter.directory import Peer
    from adapter.keys import generate
    from adapter.uftp.messages import Role

    statements: collections.Counter[str] = collections.Counter()
    execute = asyncpg.connection.Connection._execute

    async def counting(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        statements[" ".join(query.split())[:100]] += 1
        return await execute(self, query, *args, **kwargs)

    asyncpg.connection.Connection._execute = counting

    tag = uuid.uuid4().hex[:8]
    schemas = [f"bench_c_dso_{tag}", f"bench_c_cro_{tag}"]
    dso_keys, cro_keys = generate(), generate()
    dso = bw.participant("DSO", dso_keys.signing, bw.with_application(bw.PG_DSN, schemas[0]), 16)
    cro = bw.participant("CRO", cro_keys.signing, bw.with_application(bw.PG_DSN, schemas[1]), 16)
    await dso.start()
    await cro.start()
    dso.directory.add(Peer(bw.CRO, Role.CRO, cro.url(), (cro_keys.public.signing,)))
    cro.directory.add(Peer(bw.DSO, Role.DSO, dso.url(), (dso_keys.public.signing,)))
    try:
        await bw._load(dso, 16, 0.0, 1.0)
        statements.clear()
        cpu = time.process_time()
        latencies, errors = await bw._load(dso, 16, 0.0, seconds)
        cpu = time.process_time() - cpu
        n = max(len(latencies), 1)
        print(
            f"{len(latencies)} round trips, {errors} failed, CPU (both sides, counting "
            f"included) {1000 * cpu / n:.2f} ms per round trip; statements per round trip:"
        )
        for text, count in statements.most_common():
            print(f"  {count / n:5.2f}  {text}")
        session = sum(c for t, c in statements.items() if "advisory" in t)
        print(f"  session (peer slots): {session / n:.2f}; all: {statements.total() / n:.2f}")
    finally:
        await dso.stop()
        await cro.stop()
        conn = await asyncpg.connect(bw.PG_DSN)
        try:
            for schema in schemas:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--baseline", help="run the adapter of this directory instead")
    args = parser.parse_args()
    if args.baseline:
        sys.path.insert(0, args.baseline)
    sys.path.insert(0, str(Path(__file__).parent))
    asyncio.run(_run(args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
