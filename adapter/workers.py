"""``serve --workers N``: N processes serving one participant on one port of one host.

A participant's CPU goes to signatures, XML and HTTP, in one event loop per process, so one
process uses one core. Several processes on one PostgreSQL store share its work (claims,
`adapter.store.base`; coordination, `adapter.store.coordination`); this module runs N of them
behind one address. More hosts share the same store behind a load balancer, each running its
own ``serve`` (with or without workers).

The parent decides and binds; the workers serve:

1. The store must admit several processes: a SQLite store is refused (one process per file),
   before anything is bound (the command line checks it).
2. The parent takes the port's guard and binds one group of listening sockets per worker,
   all with SO_REUSEPORT (`listen.bind_workers`): a second ``serve`` of the same
   configuration - or of any other on that port - fails as before, with the port in use.
3. It forks the workers. Each serves on its own group, so the kernel spreads new connections
   over them; each inherits the guard, so the port stays guarded while any worker lives.
4. It supervises them: SIGTERM or SIGINT is passed on to every worker, which stops cleanly
   (handlers finish, pending deliveries stay stored and are released to the others); the
   parent exits once all have. A worker that dies otherwise is forked again on its sockets a
   second later - they stayed open in the parent, so connections the kernel gave them wait
   in their backlog meanwhile - unless it exited with status 2 (a mistake in the
   configuration or the store, which a new worker would meet again): then all stop. A
   worker whose parent died stops by itself.

What one worker holds when it dies (claims, a peer slot, the recovery) the others take over
as when any process of a shared store dies.

Worker 0 serves the admin socket of [admin] (`adapter.ops.admin`), through which the command
line sends; the worker forked again in its place takes the socket over (the one it left is
stale). Meanwhile the command line finds no serve there and runs standalone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
import traceback
from types import FrameType
from typing import Final

from .config import Config
from .event_loop import run
from .listen import bind_workers
from .ops.logs import say
from .run import serve

__all__ = ["RESPAWN_DELAY", "serve_workers"]

log = logging.getLogger(__name__)

#: Seconds before a worker that died is forked again.
RESPAWN_DELAY: Final = 1.0
#: How often a worker checks that its parent still lives, in seconds.
PARENT_CHECK: Final = 1.0
#: The exit status of a worker that met a mistake it would meet again.
EXIT_USAGE: Final = 2


def serve_workers(config: Config, workers: int, event_loop: str = "asyncio") -> int:
    """Bind, fork `workers` workers and supervise them until SIGTERM/SIGINT; the exit status.
    Each worker runs on the event loop named `event_loop` (`adapter.event_loop`).

    Raises `listen.CannotListen` (the port in use) before anything is forked."""
    listen = config.participant.listen
    guard, groups = bind_workers(listen.host, listen.port, workers)
    port = groups[0][0].getsockname()[1]
    stopping = False
    children: dict[int, int] = {}  # pid -> index of its socket group

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def reload(signum: int, frame: FrameType | None) -> None:
        # Each worker reads the configuration's peers again itself (`run.reread_peers`).
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    status = 0
    try:
        for index in range(workers):
            children[_fork(config, groups, index, guard, event_loop)] = index
        say(
            f"serving with {workers} workers on port {port}: pids "
            + " ".join(str(pid) for pid in children),
            sys.stdout,
        )
        while children:
            pid, wait_status = os.wait()
            if pid not in children:
                continue
            index = children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping:
                status = status or (code if code > 0 else 0)
                continue
            if code == EXIT_USAGE:
                log.error("worker %d (pid %d) exited with status 2: stopping all", index, pid)
                status = EXIT_USAGE
                forward(signal.SIGTERM, None)
                continue
            log.error("worker %d (pid %d) ended (%d): starting it again", index, pid, code)
            time.sleep(RESPAWN_DELAY)
            if not stopping:
                new = _fork(config, groups, index, guard, event_loop)
                children[new] = index
                say(f"worker {index} started again: pid {new}", sys.stdout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in (s for group in groups for s in group):
            sock.close()
        if guard is not None:
            guard.close()
    return status


def _fork(
    config: Config,
    groups: list[list[socket.socket]],
    index: int,
    guard: socket.socket | None,
    event_loop: str,
) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    # The worker: nothing of the parent's runs beyond this function (os._exit).
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # `serve` installs its own, running
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until `serve` installs its own
        for other, group in enumerate(groups):
            if other != index:
                for sock in group:
                    sock.close()
        code = _work(config, groups[index], parent, event_loop, admin=index == 0)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _work(
    config: Config, sockets: list[socket.socket], parent: int, event_loop: str, *, admin: bool
) -> int:
    """Serve on `sockets` until told to stop or orphaned; the exit status, as the command
    line's: a mistake (the store cannot be opened, say) is one line and status 2. `admin`:
    this worker serves the admin socket (worker 0 does; the command line's requests then
    run in it, and a response landing at another worker reaches it as any other's does)."""
    from .config import ConfigError
    from .console import PROG
    from .keys import KeyFileError
    from .store.base import StoreOpenError
    from .uftp.errors import UftpError

    try:
        run(_serve_while_parent_lives(config, sockets, parent, admin=admin), event_loop)
    except (ConfigError, KeyFileError, StoreOpenError, UftpError, OSError) as exc:
        say(f"{PROG}: error: {exc}", sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


async def _serve_while_parent_lives(
    config: Config, sockets: list[socket.socket], parent: int, *, admin: bool
) -> None:
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent:
                log.error("the parent of this worker died: stopping")
                stop.set()
            await asyncio.sleep(PARENT_CHECK)

    watching = asyncio.get_running_loop().create_task(watch())
    try:
        await serve(config, stop=stop, sockets=sockets, admin=admin)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
