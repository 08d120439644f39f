"""Participants as separate OS processes on loopback, for killing with SIGKILL.

The CRO runs as a user runs it, ``python -m adapter serve --config cro.toml``; the DSO is
`tests.resilience.dso_driver`. Each process writes its stderr (the adapter's log) to a file
next to its store; `Process` reads its stdout lines as they come (the driver's are JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.keys import generate, write_private
from adapter.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
CRO_DOMAIN = "cro.resilience.test"
DSO_DOMAIN = "dso.resilience.test"
#: Retries in tens of milliseconds, so that a restarted peer is reached again at once.
FAST_DELIVERY_TOML = """\
[delivery]
deadline_seconds = 300
request_timeout_seconds = 10
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.4
"""

Event = dict[str, Any]


class ProcessExited(AssertionError):
    """The process ended while a test waited for a line from it."""


def write_keys(folder: Path) -> Path:
    """cro.key/.pub and dso.key/.pub in `folder` (fresh keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("cro", "dso"):
        write_private(folder / f"{name}.key", generate())
    return folder


@dataclass(frozen=True)
class Site:
    """One CRO and one DSO: their configuration files, stores and ports."""

    root: Path
    cro_config: Path
    dso_config: Path
    cro_store: Path
    dso_store: Path
    cro_port: int
    dso_port: int


def write_site(root: Path, keys: Path) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    cro_port, dso_port = free_port(), free_port()
    cro_store, dso_store = root / "cro.sqlite3", root / "dso.sqlite3"
    cro_config, dso_config = root / "cro.toml", root / "dso.toml"
    cro_config.write_text(
        f"""\
[participant]
domain = "{CRO_DOMAIN}"
role = "CRO"
signing_key = "{keys / "cro.key"}"
listen = "127.0.0.1:{cro_port}"
store = "sqlite:{cro_store}"
versions = ["3.1.0"]

{FAST_DELIVERY_TOML}
[cro]
mode = "open"
time_zone = "Europe/Amsterdam"

[[peers]]
domain = "{DSO_DOMAIN}"
role = "DSO"
endpoint = "http://127.0.0.1:{dso_port}/shapeshifter/api/v3/message"
public_keys_file = "{keys / "dso.pub"}"
""",
        "utf-8",
    )
    dso_config.write_text(
        f"""\
[participant]
domain = "{DSO_DOMAIN}"
role = "DSO"
signing_key = "{keys / "dso.key"}"
listen = "127.0.0.1:{dso_port}"
store = "sqlite:{dso_store}"
versions = ["3.1.0"]

{FAST_DELIVERY_TOML}
[[peers]]
domain = "{CRO_DOMAIN}"
role = "CRO"
endpoint = "http://127.0.0.1:{cro_port}/shapeshifter/api/v3/message"
public_keys_file = "{keys / "cro.pub"}"
""",
        "utf-8",
    )
    return Site(root, cro_config, dso_config, cro_store, dso_store, cro_port, dso_port)


class Process:
    """A child process whose stdout lines are collected as they arrive."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.lines: list[str] = []
        #: The stdout lines that were JSON objects (the driver's events).
        self.events: list[Event] = []
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            raw = await self._proc.stdout.readline()
            async with self._changed:
                if not raw:
                    self.returncode = await self._proc.wait()
                    self._changed.notify_all()
                    return
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(line)
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(line))
                self._changed.notify_all()

    async def until_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        line: str = await self._until(lambda: self.lines, predicate, timeout)
        return line

    async def until(
        self, predicate: Callable[[Event], bool], timeout: float, *, since: int = 0
    ) -> Event:
        """The first event from index `since` on for which `predicate` holds; waits for it."""
        event: Event = await self._until(lambda: self.events, predicate, timeout, since)
        return event

    async def _until(
        self, items: Callable[[], list[Any]], predicate: Any, timeout: float, index: int = 0
    ) -> Any:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                found = items()
                while index < len(found):
                    item = found[index]
                    index += 1
                    if predicate(item):
                        return item
                if self.returncode is not None:
                    raise ProcessExited(
                        f"{self.name} exited with {self.returncode}; see {self.log_path}"
                    )
                await self._changed.wait()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed but what the kernel already has."""
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGKILL)

    async def wait(self, timeout: float = 10.0) -> int:
        assert self._proc is not None and self._reader is not None
        async with asyncio.timeout(timeout):
            await self._reader
        assert self.returncode is not None
        return self.returncode

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not come in time."""
        assert self._proc is not None
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait(timeout)
        except TimeoutError:
            self.kill()
            await self.wait()
            raise

    async def ensure_dead(self) -> None:
        """For cleanup: whatever state the process is in, end it (it is our child)."""
        if self._proc is not None and self.returncode is None:
            self.kill()
            with contextlib.suppress(Exception):
                await self.wait()


def cro_process(site: Site, run: int) -> Process:
    argv = [sys.executable, "-m", "adapter", "-v", "serve", "--config", str(site.cro_config)]
    return Process(f"CRO run {run}", argv, site.root / f"cro-{run}.log")


def dso_process(site: Site, run: int, *, count: int, connections: int, time_stamp: str) -> Process:
    argv = [
        sys.executable,
        "-m",
        "tests.resilience.dso_driver",
        "--config",
        str(site.dso_config),
        "--count",
        str(count),
        "--connections",
        str(connections),
        "--time-stamp",
        time_stamp,
    ]
    return Process(f"DSO run {run}", argv, site.root / f"dso-{run}.log")
