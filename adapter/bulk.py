"""Building many small objects at once - a 100,000-connection portfolio, read or stored - and
the help the endpoint gives the core to do it: a thread and a paused garbage collector.

The core (`adapter.uftp`) starts no thread and leaves the collector alone: both belong to the
process, not to a parser. The edges that read or write large messages choose to lend them,
here: the endpoint reads a large inner message with `LARGE_MESSAGES`, and the register's
stores build their rows inside `gc_paused`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from .uftp.codec import Bulk

__all__ = ["LARGE_MESSAGES", "gc_paused", "large_buffers_unmapped"]

log = logging.getLogger(__name__)


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


#: glibc's mallopt parameter for the size from which an allocation gets pages of its own.
_M_MMAP_THRESHOLD = -3
#: Buffers from this size up are mapped apart and go back to the system when freed.
MMAP_THRESHOLD_BYTES = 1024 * 1024


@functools.cache
def large_buffers_unmapped() -> bool:
    """Have glibc map every buffer of `MMAP_THRESHOLD_BYTES` or more apart; whether it could.

    A body a peer sends is held in a few buffers of its size (the body, its decoded Body, the
    opened message). By default glibc raises its mapping threshold to the size of each large
    buffer freed, up to 32 MiB, so that the next ones come from the heap, which keeps pages
    it no longer uses; which buffers then land where depends on the order of allocations
    (threads included), and one 28 MiB envelope sometimes cost a fifth more resident memory
    than another. A fixed threshold gives every large buffer its own pages, back to the
    system as soon as it is freed. It is process-wide, so the endpoint, which takes peers'
    bodies, sets it when it starts listening; elsewhere than glibc this does nothing.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused: large buffers stay on the heap")
    return ok
