"""Real participants on loopback (`adapter.testing.Network`): aiohttp servers and clients,
SQLite files in tmp_path.

`network` starts participants on free ports and introduces them to each other (each one's
endpoint and public key in the other's directory), as two operators exchanging their cs1
strings would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Importable from here as before `adapter.testing` held them.
from adapter.testing import FAST_DELIVERY as FAST_DELIVERY
from adapter.testing import Network
from adapter.testing import eventually as eventually


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    net = Network(tmp_path)
    try:
        yield net
    finally:
        await net.close()
