"""Log lines for a terminal or for a log shipper.

``text``: one line per record, ``TIME uftp-adapter: LEVEL: LOGGER: MESSAGE``, with the time
(ISO 8601, UTC, milliseconds) where the command runs for long (`serve`): a service's log
without timestamps cannot be lined up with a peer's. ``json``: one JSON object per line with
``time``, ``level``, ``logger`` and ``message`` (and ``exception`` for a traceback), escaped as
JSON escapes, outside ASCII too, so that nothing a peer wrote can break a line or the object.
What a peer controls is escaped in the message already (`adapter.printable`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "announce", "configure", "say"]

FORMATS = ("text", "json")


def _time(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class TextFormatter(logging.Formatter):
    def __init__(self, prog: str, *, timestamps: bool) -> None:
        super().__init__(f"{prog}: %(levelname)s: %(name)s: %(message)s")
        self._timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return f"{_time(record.created)} {line}" if self._timestamps else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": _time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=True)


def configure(level: int, fmt: str, *, prog: str, timestamps: bool) -> None:
    """Log to stderr at `level` in `fmt` ("text" or "json"). Like `logging.basicConfig`,
    nothing changes when the root logger has handlers already (a program embedding us)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if fmt == "json" else TextFormatter(prog, timestamps=timestamps)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])


def announce(text: str, fmt: str = "text", out: TextIO | None = None) -> None:
    """A line `serve` says whatever the log level ("serving ...", "shutting down"), on
    stdout: as it is, or as a JSON object like the log lines."""
    if fmt == "json":
        record = logging.LogRecord("adapter.run", logging.INFO, "", 0, text, None, None)
        text = JsonFormatter().format(record)
    say(text, out or sys.stdout)


def say(text: str, out: TextIO) -> None:
    """`text` and its newline on `out` in one write, flushed at once.

    The workers of ``serve --workers`` and their parent share one stdout and one stderr
    (`adapter.workers`). `print` writes the text and then its newline, which an unbuffered
    stream (``PYTHONUNBUFFERED``, ``python -u``, as many containers run Python) passes on as
    two writes: two workers saying "serving" at once gave "serving ...serving ..." and an
    empty line. One write of a line to a pipe is never split by another's (POSIX, up to
    PIPE_BUF bytes, 4096 on Linux; these lines are far shorter)."""
    out.write(text + "\n")
    out.flush()
