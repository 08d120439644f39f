"""Retention and backup: old envelopes and messages removed by the running participant and by
`store prune`, never a message in flight nor the Common Reference register; `store backup`
copying a SQLite store while it is in use."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapter.config import ConfigError, RetentionSettings, load_config, parse_config
from adapter.cro.show import read_report
from adapter.dso import load_portfolio, publish
from adapter.ops import housekeeping, retention
from adapter.ops.service import Service
from adapter.store import SqliteStore, admin_for
from adapter.store.admin import MessageQuery
from adapter.store.base import OutboundStatus
from adapter.uftp.messages import TestMessage
from tests.conftest import eventually
from tests.ops.conftest import CRO_DOMAIN, uftp, use_store
from tests.store.test_store_contract import attempt, inbound, outbound
from tests.test_config import valid

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


# -- [retention] --------------------------------------------------------------------------


def test_retention_defaults_and_table() -> None:
    assert parse_config(valid(), Path("/srv"), "t.toml").retention == RetentionSettings(90, 400)
    data = valid()
    data["retention"] = {"envelopes_days": 30, "messages_days": 60}
    assert parse_config(data, Path("/srv"), "t.toml").retention == RetentionSettings(30, 60)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"envelopes_days": 100, "messages_days": 50},
            "retention.envelopes_days: must not exceed messages_days (50)",
        ),
        ({"envelopes_days": 0}, "retention.envelopes_days: expected an integer >= 1, got 0"),
        (
            {"envelopes_days": 1, "messages_days": 7},
            "retention.messages_days: must be more than the 7 days of "
            "limits.time_stamp_past_seconds",
        ),
        ({"keep_days": 3}, "retention.keep_days: unknown key"),
    ],
)
def test_retention_mistakes(table: dict[str, int], message: str) -> None:
    data = valid()
    data["retention"] = table
    with pytest.raises(ConfigError) as caught:
        parse_config(data, Path("/srv"), "t.toml")
    assert str(caught.value).startswith(f"t.toml: {message}")


# -- the running participant and `store prune` ----------------------------------------------


async def old_and_recent(path: Path) -> None:
    """A store with finished messages 500 and 100 days old and of yesterday."""
    store = SqliteStore(path)
    await store.open()
    try:
        for name, age in (("ancient", 500 * DAY), ("old", 100 * DAY), ("recent", DAY)):
            await store.save_inbound(inbound(f"in-{name}", received_at=NOW - age))
            await store.finish_inbound(
                inbound().sender_domain, f"in-{name}", outbound(f"out-{name}", created_at=NOW - age)
            )
            ok = attempt(
                f"out-{name}", at=NOW - age, http_status=200, outcome="delivered", detail=""
            )
            await store.record_attempt(ok, OutboundStatus.DELIVERED, None)
    finally:
        await store.close()


async def sizes(store: SqliteStore) -> dict[str, int]:
    """Every message's envelope size (0: pruned), by MessageID."""
    admin = admin_for(store)
    found = {row.message_id: row.envelope_bytes for row in await admin.inbound(MessageQuery())}
    found.update(
        (row.message_id, row.envelope_bytes) for row in await admin.outbound(MessageQuery())
    )
    return found


async def test_the_running_participant_prunes_at_its_start_and_then_every_hour(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "PRUNE_SECONDS", 0.2)
    store_path = samples.parent / "var" / "dso.sqlite3"
    await old_and_recent(store_path)
    async with Service(load_config(samples / "dso.toml")) as dso:
        store = dso.participant.store
        assert isinstance(store, SqliteStore)

        async def pruned() -> bool:
            left = await sizes(store)
            return "in-ancient" not in left and left.get("in-old") == 0

        await eventually(pruned, timeout=5)
        left = await sizes(store)
        assert set(left) == {"in-old", "out-old", "in-recent", "out-recent"}
        assert left["out-old"] == 0 and left["in-recent"] > 0 and left["out-recent"] > 0
        # The hourly turn: what has aged since goes too.
        await store.save_inbound(inbound("in-late", received_at=NOW - 450 * DAY))
        await store.finish_inbound(inbound().sender_domain, "in-late", None)
        await eventually(lambda: _gone(store, "in-late"), timeout=5)


async def _gone(store: SqliteStore, message_id: str) -> bool:
    return message_id not in await sizes(store)


async def test_store_prune_on_the_command_line(samples: Path) -> None:
    store_path = samples.parent / "var" / "dso.sqlite3"
    await old_and_recent(store_path)
    config = str(samples / "dso.toml")

    first = await uftp("store", "prune", "--config", config)
    second = await uftp("store", "prune", "--config", config)

    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        "removed the envelopes of 2 messages older than 90 days (1 received, 1 sent) and "
        "2 messages older than 400 days (1 received, 1 sent)\n"
    )
    assert second.stdout.startswith("nothing to remove")
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT count(*) FROM inbound").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM inbound_envelope").fetchone() == (1,)


async def test_the_register_keeps_its_history_whatever_retention_removes(
    samples: Path,
) -> None:
    cro_config = load_config(samples / "cro.toml")
    async with Service(cro_config) as cro, Service(load_config(samples / "dso.toml")) as dso:
        update = load_portfolio(samples / "portfolio.csv")
        response = await publish(dso.participant, update, to=CRO_DOMAIN, timeout=10)
        assert response.accepted
        before = await read_report(cro_config, history=True, store=cro.participant.store)

        # A thousand days on: every message the CRO holds is older than any retention.
        pruned = await retention.prune(
            admin_for(cro.participant.store), cro_config.retention, NOW + 1000 * DAY
        )

        assert pruned.inbound_messages == 1 and pruned.outbound_messages == 1
        assert await admin_for(cro.participant.store).inbound(MessageQuery()) == []
        after = await read_report(cro_config, history=True, store=cro.participant.store)
    assert after == before and len(after.points) == 3 and after.updates


# -- store backup ---------------------------------------------------------------------------


async def test_store_backup_copies_a_store_in_use(samples: Path, tmp_path: Path) -> None:
    config = str(samples / "dso.toml")
    copy = tmp_path / "backup.sqlite3"
    async with Service(load_config(config)) as dso:
        for _ in range(3):
            await dso.participant.send(TestMessage(), to=CRO_DOMAIN)  # the CRO is down

        result = await uftp("store", "backup", "--config", config, str(copy))
        again = await uftp("store", "backup", "--config", config, str(copy))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backed up {samples.parent / 'var' / 'dso.sqlite3'} to")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert f"{copy.name}-wal" not in os.listdir(copy.parent)  # one self-contained file
    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("SELECT count(*) FROM outbound").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM outbound_envelope").fetchone() == (3,)
    assert again.returncode == 2 and "exists already" in again.stderr
    # The copy is a store this program opens.
    reopened = SqliteStore(copy)
    await reopened.open()
    try:
        assert len(await reopened.pending_outbound()) == 3
    finally:
        await reopened.close()


async def test_store_backup_of_postgres_points_to_pg_dump(samples: Path, tmp_path: Path) -> None:
    dso_file = samples / "dso.toml"
    use_store(dso_file, "postgresql://127.0.0.1/test?schema=uftp")
    result = await uftp("store", "backup", "--config", str(dso_file), str(tmp_path / "x"))
    assert result.returncode == 2
    assert "pg_dump" in result.stderr and not (tmp_path / "x").exists()


def test_the_backup_refuses_a_missing_store(tmp_path: Path) -> None:
    from adapter.ops.backup import BackupError, backup_sqlite

    with pytest.raises(BackupError, match="no SQLite store there"):
        backup_sqlite(tmp_path / "none.sqlite3", tmp_path / "copy")
    assert not os.path.exists(tmp_path / "copy")
