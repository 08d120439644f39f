"""Participants run as services from the sample configs on free ports, and the `uftp-adapter`
command run beside them as an operator runs it: in a process of its own."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapter.keys import generate, write_private
from tests.test_run import copy_samples

REPOSITORY = Path(__file__).resolve().parents[2]
DSO_DOMAIN = "dso.uftp-demo.test"
CRO_DOMAIN = "cro.uftp-demo.test"


@dataclass(frozen=True)
class Command:
    returncode: int
    stdout: str
    stderr: str


async def uftp(*args: str, env: dict[str, str] | None = None) -> Command:
    """`uftp-adapter ARGS` in a process of its own; the event loop (and the participants on
    it) go on meanwhile."""
    program = "import sys; from adapter.cli import main; sys.exit(main(sys.argv[1:]))"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        program,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY), **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Command(process.returncode, out.decode(), err.decode())


def set_delivery(config_file: Path, **values: float) -> None:
    """Change keys of the [delivery] table of a sample config (all of them are there)."""
    lines = config_file.read_text("utf-8").split("\n")
    for index, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if key in values:
            lines[index] = f"{key} = {values[key]}"
    config_file.write_text("\n".join(lines), "utf-8")


def use_store(config_file: Path, store: str) -> None:
    text = config_file.read_text("utf-8")
    lines = [
        f'store = "{store}"' if line.startswith("store = ") else line for line in text.split("\n")
    ]
    config_file.write_text("\n".join(lines), "utf-8")


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """The sample configs on free ports with their keys; the DSO retries fast."""
    folder = copy_samples(tmp_path)
    for name in ("dso", "cro"):
        write_private(tmp_path / "keys" / f"{name}.key", generate())
    set_delivery(
        folder / "dso.toml",
        deadline_seconds=60,
        request_timeout_seconds=2,
        backoff_initial_seconds=0.05,
        backoff_max_seconds=0.2,
    )
    return folder
