"""A second participant on a SQLite store that one runs on refuses to start, naming it.

Before, both started (on two ports), and both delivered every pending message and handled
every unfinished one. Now the store's lock file decides, before the port is bound or anything
sent; it is released when the holder stops or dies, so a new one starts then.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from adapter.store.base import StoreOpenError
from adapter.store.sqlite import lock_path
from adapter.uftp.messages import Role
from tests.conftest import Network
from tests.resilience.harness import Process, cro_process, write_keys, write_site

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock is POSIX")

DSO = "dso.lock.test"


async def test_a_second_participant_on_the_file_refuses_until_the_first_stops(
    network: Network,
) -> None:
    first = network.create(DSO, Role.DSO, store_name="dso")
    await network.start(first)
    second = network.create(DSO, Role.DSO, store_name="dso")

    with pytest.raises(StoreOpenError, match=f"in use by process {os.getpid()} "):
        await second.start()

    await first.stop()
    await second.start()
    assert second.port != 0


async def test_a_second_serve_refuses_naming_the_first_and_starts_once_it_is_killed(
    tmp_path: Path,
) -> None:
    site = write_site(tmp_path / "site", write_keys(tmp_path / "keys"))
    first = cro_process(site, 1)
    await first.start()
    third: Process | None = None
    try:
        await first.until_line(lambda line: line.startswith("serving"), 60)

        second = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "adapter",
            "serve",
            "--config",
            str(site.cro_config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 2
        assert out == b""
        # (after the configuration's warning about its short test deadline)
        assert err.decode().splitlines()[-1] == (
            f"uftp-adapter: error: {site.cro_store}: the store is in use by process "
            f"{first.pid} (it holds {lock_path(site.cro_store)}); a SQLite store admits one "
            "process: stop that one first, or share a PostgreSQL store between several"
        )

        first.kill()
        await first.wait()
        third = cro_process(site, 3)
        await third.start()
        await third.until_line(lambda line: line.startswith("serving"), 60)
    finally:
        await first.ensure_dead()
        if third is not None:
            await third.terminate()
