"""Building many small objects at once - a 100,000-connection portfolio, read or stored - and
the help the endpoint gives the core to do it: a thread and a paused garbage collector.

The core (`adapter.uftp`) starts no thread and leaves the collector alone: both belong to the
process, not to a parser. The edges that read or write large messages choose to lend them,
here: the endpoint reads a large inner message with `LARGE_MESSAGES`, and the register's
stores build their rows inside `gc_paused`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from .uftp.codec import Bulk

__all__ = ["LARGE_MESSAGES", "gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while rows are built.

    Rows are tuples of strings and dates and can form no cycles, yet allocating 100,000 of
    them triggers hundreds of collections, some of which walk the whole heap: a good part of
    the codec's build time and of the register's write time (bench/README.md). The
    collector is process-wide, so other threads' garbage waits meanwhile too; what a pause of
    a fraction of a second defers, the next collection takes.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


#: Threads that validate large inner messages while the reading thread builds their models.
#: Each validation is independent and never waits for another, so a small pool cannot
#: deadlock; when every thread is busy, a validation waits its turn and the result is the
#: same. Threads start on first use only.
_VALIDATORS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="uftp-validate")

#: How the endpoint reads an inner message above `codec.CONCURRENT_VALIDATION_BYTES`.
LARGE_MESSAGES = Bulk(executor=_VALIDATORS, building=gc_paused)
