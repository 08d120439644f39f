"""A CRO endpoint alone in its own process, for measurements that this test process would
disturb (its peak memory): run as `python -m tests.hostile.lone_endpoint DIRECTORY`.

It serves on a free loopback port with the default limits, knows one DSO (`DSO`, whose key
is derived from `DSO_SEED`), prints its port on one line, and stops when its standard input
closes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from nacl.bindings import crypto_sign_seed_keypair

from adapter.directory import Peer, StaticDirectory
from adapter.keys import generate
from adapter.participant import Participant
from adapter.store.sqlite import SqliteStore
from adapter.uftp.messages import Role

CRO = "cro.example.com"
DSO = "dso.example-grid.nl"
DSO_SEED = b"lone endpoint test key, not real"
DSO_PUBLIC, DSO_SECRET = crypto_sign_seed_keypair(DSO_SEED)


async def serve(directory: Path) -> None:
    dso = Peer(DSO, Role.DSO, "http://127.0.0.1:9/", (DSO_PUBLIC,))
    cro = Participant(
        domain=CRO,
        role=Role.CRO,
        keys=generate(),
        store=SqliteStore(directory / "cro.sqlite3"),
        directory=StaticDirectory([dso]),
    )
    async with cro:
        print(cro.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
