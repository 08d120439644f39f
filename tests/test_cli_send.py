"""`serve` and `send` as an operator runs them: separate processes, exit statuses 0/1/2."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapter.dso import load_portfolio
from adapter.uftp import codec
from tests.cli import uftp
from tests.serve import Served, serving
from tests.test_run import SAMPLES, copy_samples
from tests.uftp.samples import make_dso_portfolio_update


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    config = copy_samples(tmp_path)
    for name in ("dso", "cro"):
        assert uftp("keys", "generate", name, "--dir", str(tmp_path / "keys")).returncode == 0
    return config


@pytest.fixture
async def served_cro(samples: Path) -> AsyncIterator[Served]:
    async with serving(samples / "cro.toml") as served:
        yield served


def message_file(tmp_path: Path, **changes: object) -> Path:
    """The sample portfolio as a message file; its metadata is a template `send` replaces."""
    portfolio = load_portfolio(SAMPLES / "portfolio.csv")
    template = dataclasses.replace(
        make_dso_portfolio_update(), congestion_points=portfolio.congestion_points, **changes
    )
    path = tmp_path / "update.xml"
    path.write_bytes(codec.encode(template))
    return path


async def test_send_exits_0_when_accepted(
    samples: Path, served_cro: Served, tmp_path: Path
) -> None:
    result = uftp(
        "send",
        "--config",
        str(samples / "dso.toml"),
        "--to",
        "cro.uftp-demo.test",
        str(message_file(tmp_path)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DSOPortfolioUpdateResponse Accepted" in result.stdout


async def test_each_send_is_a_new_request_in_a_new_conversation(
    samples: Path, served_cro: Served, tmp_path: Path
) -> None:
    """The metadata of the file is replaced, its ConversationID too: a request opens a
    conversation (metadata-attributes.md), and a file sent twice is two requests."""
    template = message_file(tmp_path)
    written = codec.decode(template.read_bytes())
    for _ in range(2):
        result = uftp(
            "send",
            "--config",
            str(samples / "dso.toml"),
            "--to",
            "cro.uftp-demo.test",
            str(template),
        )
        assert result.returncode == 0, result.stdout + result.stderr

    with sqlite3.connect(tmp_path / "var" / "cro.sqlite3") as conn:
        received = conn.execute(
            "SELECT message_id, conversation_id FROM inbound "
            "WHERE message_type = 'DSOPortfolioUpdate'"
        ).fetchall()
    conn.close()
    assert len(received) == 2
    message_ids = {message_id for message_id, _ in received}
    conversations = {conversation for _, conversation in received}
    assert len(message_ids) == 2 and written.message_id not in message_ids
    assert len(conversations) == 2 and written.conversation_id not in conversations


async def test_send_exits_1_when_rejected(
    samples: Path, served_cro: Served, tmp_path: Path
) -> None:
    result = uftp(
        "send",
        "--config",
        str(samples / "dso.toml"),
        "--to",
        "cro.uftp-demo.test",
        str(message_file(tmp_path, time_zone="Europe/Brussels")),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Rejected: TimeZone rejected" in result.stdout


def test_send_exits_2_when_nobody_answers(samples: Path, tmp_path: Path) -> None:
    result = uftp(
        "send",
        "--config",
        str(samples / "dso.toml"),
        "--to",
        "cro.uftp-demo.test",
        "--timeout",
        "1",
        str(message_file(tmp_path)),
    )
    assert result.returncode == 2
    assert "not delivered" in result.stdout and "connection refused" in result.stdout


def test_send_refuses_a_message_file_that_is_not_uftp(samples: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<DSOPortfolioUpdate/>")
    result = uftp(
        "send", "--config", str(samples / "dso.toml"), "--to", "cro.uftp-demo.test", str(bad)
    )
    assert result.returncode == 2
    assert result.stderr.startswith("uftp-adapter: error: ")
    assert "bad.xml" in result.stderr
    assert "Traceback" not in result.stderr
