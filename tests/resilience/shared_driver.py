"""A participant in its own OS process that sends a burst: one of the processes of a store.

    python -m tests.resilience.shared_driver --config dso.toml --count 30 --to cro.test

Starts the participant of the configuration (its store may be shared with other processes),
queues `--count` DSOPortfolioUpdates for `--to` with `send()` (each is durable once `send()`
returns), then runs until SIGTERM, printing JSON lines on stdout:

* ``{"event": "started", "port": P, "pid": PID}`` once it listens;
* ``{"event": "sent", "index": I, "message_id": ID}`` after each `send()` returned;
* ``{"event": "burst", "count": N}`` when the burst is queued;
* ``{"event": "stopped"}`` after a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from adapter.config import load_config
from adapter.run import participant_for
from tests.resilience.dso_driver import emit, portfolio_update


async def run(config_path: Path, count: int, to: str) -> None:
    participant = participant_for(load_config(config_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await participant.start()
    try:
        emit("started", port=participant.port, pid=os.getpid())
        for index in range(count):
            sent = await participant.send(portfolio_update(index, 1), to=to)
            emit("sent", index=index, message_id=sent.message_id)
        emit("burst", count=count)
        await stop.wait()
    finally:
        await participant.stop()
    emit("stopped")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--to", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.config, args.count, args.to))


if __name__ == "__main__":
    main()
