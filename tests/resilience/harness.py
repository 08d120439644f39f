"""Participants as separate OS processes on loopback, for killing with SIGKILL.

The CRO runs as a user runs it, ``python -m adapter serve --config cro.toml``; the DSO is
`tests.resilience.dso_driver`. Each process writes its stderr (the adapter's log) to a file
next to its store; `tests.serve.Process` reads its stdout lines as they come (the driver's
are JSON).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from adapter.keys import generate, write_private
from adapter.testing import free_port
from tests.serve import Process, serve_argv

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


def cro_process(site: Site, run: int) -> Process:
    return Process(f"CRO run {run}", serve_argv(site.cro_config), site.root / f"cro-{run}.log")


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
