"""`uftp-adapter cro show` and a DSO's choice of characters.

The schema lets any character but a line end follow an EntityAddress's prefix
(ea1.YYYY-MM.domain:...), so a DSO can register a congestion point whose address holds U+202E
(which reverses the rest of a terminal line), U+2028 or U+0085 (new lines for some viewers),
or zero-width and isolate controls: it is accepted and stored as sent, and shown escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import unicodedata
from pathlib import Path

from adapter.cli import main
from adapter.store.sqlite import SqliteStore
from adapter.testing import Network
from adapter.uftp.messages import Result
from tests.hostile.harness import CRO, start

#: Every kind of character that reorders or breaks a line somewhere, inside an address.
ADDRESS = (
    "ea1.2024-01.nl.example-grid:cp-\u202eevil\u202c-\u2028line\u0085next"
    "-\u200fmark\u2066isolate\u2069-\u200bzero\x7f\x9b"
)
SHOWN = (
    "ea1.2024-01.nl.example-grid:cp-\\u202eevil\\u202c-\\u2028line\\x85next"
    "-\\u200fmark\\u2066isolate\\u2069-\\u200bzero\\x7f\\x9b"
)


def cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


async def test_an_entity_address_is_shown_escaped(network: Network, tmp_path: Path) -> None:
    h = await start(network)
    message = h.update()
    point = dataclasses.replace(message.congestion_points[0], entity_address=ADDRESS)
    message = dataclasses.replace(message, congestion_points=(point,))
    status, text = await h.post(h.seal(message))
    assert status == 200, text
    assert (await h.response_to(message.message_id)).result is Result.ACCEPTED
    assert isinstance(h.cro.store, SqliteStore)
    config = tmp_path / "cro.toml"
    config.write_text(
        f'[participant]\ndomain = "{CRO}"\nrole = "CRO"\nsigning_key = "cro.key"\n'
        f'listen = "127.0.0.1:0"\nstore = "sqlite:{h.cro.store.path}"\nversions = ["3.1.0"]\n'
    )

    shown = await asyncio.to_thread(cli, "cro", "show", "--config", str(config), "--history")
    assert SHOWN in shown
    unprintable = [c for c in shown if c != "\n" and not c.isprintable()]
    assert unprintable == [], [unicodedata.name(c, hex(ord(c))) for c in unprintable]

    data = await asyncio.to_thread(cli, "cro", "show", "--config", str(config), "--format", "json")
    assert data.isascii()
    assert json.loads(data)["congestion_points"][0]["entity_address"] == ADDRESS
