"""`uftp-adapter serve` in the tests, as an operator runs it: a process of its own
(`python -m adapter [-v] serve --config CONFIG`), ready once it says it serves (the line
`serve` prints on stdout when it listens), and stopped with SIGTERM, which must end it
cleanly - or with another signal the test sends. `Process` runs any child this way (the
resilience tests' drivers too): its stdout lines collected as they come, its stderr (the
adapter's log) in a file.

The event loop must run while the process starts and stops; between, a test may block it
(a command run with `subprocess.run`): the log goes to a file, and what little `serve`
prints on stdout waits in the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

Event = dict[str, Any]

_runs = itertools.count(1)


class ProcessExited(AssertionError):
    """The process ended while a test waited for a line from it."""


class Process:
    """A child process whose stdout lines are collected as they arrive."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
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
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def stdout(self) -> str:
        """What it wrote on stdout so far, line by line."""
        return "".join(f"{line}\n" for line in self.lines)

    @property
    def stderr(self) -> str:
        """What it wrote on stderr so far (its log file)."""
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    @property
    def output(self) -> str:
        """Both, for an assertion's message."""
        return self.stdout + self.stderr

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

    async def until_line(
        self, predicate: Callable[[str], bool], timeout: float, *, nth: int = 1
    ) -> str:
        """The `nth` line (from the first) for which `predicate` holds; waits for it."""
        seen = 0

        def counted(line: str) -> bool:
            nonlocal seen
            seen += bool(predicate(line))
            return seen == nth

        line: str = await self._until(lambda: self.lines, counted, timeout)
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

    def send_signal(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed but what the kernel already has."""
        self.send_signal(signal.SIGKILL)

    async def wait(self, timeout: float = 10.0) -> int:
        assert self._proc is not None and self._reader is not None
        async with asyncio.timeout(timeout):
            await self._reader
        assert self.returncode is not None
        return self.returncode

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not come in time."""
        if self.returncode is None:
            self.send_signal(signal.SIGTERM)
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


def serve_argv(config: Path, *options: str, program_options: Sequence[str] = ("-v",)) -> list[str]:
    """`python -m adapter PROGRAM_OPTIONS serve --config CONFIG OPTIONS`."""
    return [
        sys.executable,
        "-m",
        "adapter",
        *program_options,
        "serve",
        "--config",
        str(config),
        *options,
    ]


class Served(Process):
    """A `serve` of `config`."""

    def __init__(
        self,
        config: Path,
        *options: str,
        program_options: Sequence[str] = ("-v",),
        env: dict[str, str] | None = None,
    ) -> None:
        argv = serve_argv(config, *options, program_options=program_options)
        log = config.parent / f"{config.stem}-serve-{next(_runs)}.log"  # a new one each run
        super().__init__(f"serve {config.name}", argv, log, env=env)
        self.config = config

    @property
    def socket(self) -> Path:
        """The admin socket of its configuration."""
        from adapter.config import load_config

        path = load_config(self.config).admin.socket
        assert path is not None
        return path


async def until_serving(process: Process, timeout: float = 30) -> str:
    """The line in which `process` says it serves (`serve`'s first on stdout); raises
    `ProcessExited`, with its log's name, if it ends first."""
    return await process.until_line(lambda line: "serving" in line, timeout)


async def start_serve(
    config: Path,
    *options: str,
    program_options: Sequence[str] = ("-v",),
    env: dict[str, str] | None = None,
) -> Served:
    """`serve` of CONFIG, started and serving."""
    process = Served(config, *options, program_options=program_options, env=env)
    await process.start()
    try:
        await until_serving(process)
    except BaseException:
        await process.ensure_dead()
        raise
    return process


@contextlib.asynccontextmanager
async def serving(
    config: Path,
    *options: str,
    program_options: Sequence[str] = ("-v",),
    env: dict[str, str] | None = None,
) -> AsyncIterator[Served]:
    """`start_serve`, and at the end SIGTERM, which must end it with status 0 (unless the
    test ended it itself)."""
    process = await start_serve(config, *options, program_options=program_options, env=env)
    try:
        yield process
    finally:
        try:
            if process.returncode is None:
                assert await process.terminate(30) == 0, process.output
        finally:
            await process.ensure_dead()
