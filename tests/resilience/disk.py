"""A small disk of the test's own: a tmpfs it mounts, fills and frees, to see what the adapter
does when the disk under its store is full.

Mounting needs root (or CAP_SYS_ADMIN); where it is not allowed, the tests that need it skip
and say why. Nothing else on the machine notices: the filler lives on the small disk only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler"


class SmallDisk:
    """A mounted tmpfs of a few MiB."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fill(self) -> None:
        """Take every free byte (down to the last one: SQLite's next page must not fit)."""
        fd = os.open(self.path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 16, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, bytes(chunk))
        finally:
            os.close(fd)
        assert self.free_bytes() == 0

    def free(self) -> None:
        """Give the space back."""
        (self.path / FILLER).unlink(missing_ok=True)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[SmallDisk]:
    """Mount a tmpfs of `size` at `path` for the duration; skip the test where that is not
    allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs at {path} to fill it ({mounted.stderr.strip()}): the "
            "disk-full tests need root, or CAP_SYS_ADMIN in a container"
        )
    try:
        yield SmallDisk(path)
    finally:
        # Lazily if something still holds a file there: the mount goes once it is released.
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
