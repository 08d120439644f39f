"""Which event loop runs a participant: asyncio's own, or uvloop when asked for.

Why a choice: uvloop (libuv under asyncio's interface) spends less CPU per socket read, write
and callback than asyncio's pure-Python selector loop, and a round trip is mostly such work
around the signature check and the parse (bench/bench_roundtrip.py measures what it saves).
Why not by default: it is a compiled extra (`pip install 'uftp-adapter[uvloop]'`, POSIX
only), and the test suite, crash and durability tests included, runs on asyncio's loop: an
operator opts in with ``serve --event-loop uvloop``. Nothing in the adapter depends on which
loop runs it: both run the same coroutines, threads (`asyncio.to_thread`, the SQLite commit
thread) and signal handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from .uftp.errors import AdapterError

__all__ = ["EVENT_LOOPS", "UnknownEventLoop", "loop_factory", "run"]

T = TypeVar("T")

#: The loops `run` knows, by the name the command line takes.
EVENT_LOOPS: Final = ("asyncio", "uvloop")


class UnknownEventLoop(AdapterError, ValueError):
    """An event loop that is not one of `EVENT_LOOPS`, or not installed."""


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of loop `name` for `asyncio.Runner` (None: asyncio's default)."""
    if name == "asyncio":
        return None
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise UnknownEventLoop(
                "the uvloop event loop is not installed: pip install 'uftp-adapter[uvloop]'"
            ) from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise UnknownEventLoop(f"unknown event loop {name!r}: expected one of {', '.join(EVENT_LOOPS)}")


def run(main: Coroutine[Any, Any, T], event_loop: str = "asyncio") -> T:
    """`asyncio.run(main)` on the event loop named `event_loop`."""
    try:
        factory = loop_factory(event_loop)
    except UnknownEventLoop:
        main.close()  # never awaited: say so to nobody
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
