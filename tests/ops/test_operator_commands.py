"""The operator's commands (`outbox`, `inbox`, `status`) on the store of a participant that
runs meanwhile: the DSO of the sample configs, served in this process, the commands in
processes of their own, as an operator runs them beside `serve`.

The running participant follows what the commands write: a cancelled message is not
attempted again, a requeued one is delivered without a restart.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web

from adapter.config import load_config
from adapter.ops import housekeeping
from adapter.ops.service import Service
from adapter.store import admin_for
from adapter.store.admin import MessageQuery
from adapter.store.base import OutboundStatus
from adapter.uftp.messages import TestMessage
from tests.conftest import eventually
from tests.ops.conftest import CRO_DOMAIN, DSO_DOMAIN, set_delivery, uftp, use_store
from tests.postgres import Schema


async def attempted(service: Service, message_id: str, times: int) -> bool:
    record = await service.participant.store.get_outbound(message_id)
    return record is not None and record.attempts >= times


async def test_cancel_beside_a_running_serve_stops_its_retries(samples: Path) -> None:
    dso_file = str(samples / "dso.toml")
    async with Service(load_config(dso_file)) as dso:
        sent = await dso.participant.send(TestMessage(), to=CRO_DOMAIN)  # the CRO is down
        await eventually(lambda: attempted(dso, sent.message_id, 2), timeout=10)

        listing = await uftp("outbox", "list", "--config", dso_file, "--status", "pending")
        assert listing.returncode == 0, listing.stderr
        assert sent.message_id in listing.stdout
        (row,) = [line for line in listing.stdout.splitlines() if sent.message_id in line]
        assert "TestMessage" in row and "pending" in row and "refused" in row.lower()

        cancel = await uftp("outbox", "cancel", sent.message_id, "--config", dso_file)

        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert f"{sent.message_id}: cancelled" in cancel.stdout
        # The CRO comes up: a retry the running DSO still made would now be delivered.
        async with Service(load_config(samples / "cro.toml")) as cro:
            await asyncio.sleep(1.5)  # several times the DSO's longest backoff (0.2 s)
            assert await admin_for(cro.participant.store).inbound(MessageQuery()) == []
        record = await dso.participant.store.get_outbound(sent.message_id)
        assert record is not None and record.status is OutboundStatus.CANCELLED
        again = await uftp("outbox", "cancel", sent.message_id, "--config", dso_file)
        assert again.returncode == 1 and "not pending (cancelled)" in again.stdout


async def test_retry_beside_a_running_serve_delivers_without_a_restart(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "OUTBOX_SCAN_SECONDS", 0.2)
    dso_file = samples / "dso.toml"
    set_delivery(dso_file, deadline_seconds=1.5, request_timeout_seconds=1)
    async with Service(load_config(dso_file)) as dso:
        sent = await dso.participant.send(TestMessage(), to=CRO_DOMAIN)  # the CRO is down

        async def expired() -> bool:
            record = await dso.participant.store.get_outbound(sent.message_id)
            return record is not None and record.status is OutboundStatus.EXPIRED

        await eventually(expired, timeout=10)
        async with Service(load_config(samples / "cro.toml")) as cro:
            retry = await uftp("outbox", "retry", sent.message_id, "--config", str(dso_file))

            assert retry.returncode == 0, retry.stdout + retry.stderr
            assert f"{sent.message_id}: requeued" in retry.stdout

            async def delivered() -> bool:
                record = await dso.participant.store.get_outbound(sent.message_id)
                return record is not None and record.status is OutboundStatus.DELIVERED

            await eventually(delivered, timeout=5)
            received = await admin_for(cro.participant.store).inbound(MessageQuery())
            assert [m.message_id for m in received] == [sent.message_id]
        again = await uftp("outbox", "retry", sent.message_id, "--config", str(dso_file))
        assert again.returncode == 1 and "delivered: not sent again" in again.stdout


async def test_show_status_and_inbox_after_an_exchange(samples: Path) -> None:
    dso_file = str(samples / "dso.toml")
    async with (
        Service(load_config(samples / "cro.toml")),
        Service(load_config(dso_file)) as dso,
    ):
        response = await dso.participant.request(TestMessage(), to=CRO_DOMAIN, timeout=10)
        sent = await admin_for(dso.participant.store).outbound(MessageQuery())
        request_id = sent[0].message_id  # a 3.x TestMessageResponse carries no reference

        shown = await uftp("outbox", "show", request_id, "--config", dso_file, "--xml")
        status = await uftp("status", "--config", dso_file, "--format", "json")
        inbox = await uftp("inbox", "list", "--config", dso_file, "--since", "1h")
        received = await uftp(
            "inbox", "show", response.message_id, "--config", dso_file, "--format", "json", "--xml"
        )
        text_status = await uftp("status", "--config", dso_file)

    assert shown.returncode == 0, shown.stderr
    assert "status:       delivered" in shown.stdout
    assert "delivery attempts, oldest first:" in shown.stdout
    assert "<TestMessage " in shown.stdout  # the message as sent
    data = json.loads(status.stdout)
    assert data["participant"] == DSO_DOMAIN
    assert data["outbound"]["delivered"] == 1 and data["inbound"]["handled"] == 1
    (cro,) = data["peers"]
    assert cro["domain"] == CRO_DOMAIN and cro["role"] == "CRO" and cro["configured"]
    assert cro["last_delivered"] is not None and cro["last_received"] is not None
    assert cro["failed_attempts"] == 0
    assert "TestMessageResponse" in inbox.stdout and CRO_DOMAIN in inbox.stdout
    detail = json.loads(received.stdout)
    assert detail["message_type"] == "TestMessageResponse" and detail["status"] == "handled"
    assert "<TestMessageResponse " in detail["xml"]
    assert "failures in the last hour: 0 delivery attempts" in text_status.stdout
    assert "1 delivered" in text_status.stdout


async def test_what_a_peer_wrote_is_printed_escaped(samples: Path) -> None:
    """A peer that refuses with a body of its choosing: a line feed or U+202E in it must not
    forge a line of the table or reverse it on the operator's terminal."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=400, text="bad\u202e message\r\nforged line")

    app = web.Application()
    app.router.add_post("/shapeshifter/api/v3/message", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dso_file = samples / "dso.toml"
    endpoint = f'endpoint = "http://127.0.0.1:{port}/shapeshifter/api/v3/message"'
    lines = dso_file.read_text().split("\n")
    dso_file.write_text(
        "\n".join(endpoint if line.startswith("endpoint = ") else line for line in lines)
    )
    try:
        async with Service(load_config(dso_file)) as dso:
            sent = await dso.participant.send(TestMessage(), to=CRO_DOMAIN)

            async def failed() -> bool:
                record = await dso.participant.store.get_outbound(sent.message_id)
                return record is not None and record.status is OutboundStatus.FAILED

            await eventually(failed, timeout=10)
    finally:
        await runner.cleanup()

    listing = await uftp("outbox", "list", "--config", str(dso_file))
    shown = await uftp("outbox", "show", sent.message_id, "--config", str(dso_file))
    as_json = await uftp("outbox", "list", "--config", str(dso_file), "--format", "json")

    assert "bad\\u202e message" in listing.stdout and "\u202e" not in listing.stdout
    assert len(listing.stdout.splitlines()) == 2  # the heading and the one message
    assert "\u202e" not in shown.stdout and "\\u202e" in shown.stdout
    assert "forged line" not in [line.strip() for line in shown.stdout.splitlines()]
    assert "\u202e" not in as_json.stdout
    # The reason is the peer's first line as recorded: escaped once, where it was kept.
    assert "bad\\u202e message" in json.loads(as_json.stdout)[0]["last_error"]


async def test_usage_mistakes_and_missing_stores_are_one_line(samples: Path) -> None:
    dso_file = str(samples / "dso.toml")
    no_store = await uftp("outbox", "list", "--config", dso_file)
    assert no_store.returncode == 2 and "no SQLite store there" in no_store.stderr
    assert not (samples.parent / "var" / "dso.sqlite3").exists()  # reading created nothing
    bad_since = await uftp("inbox", "list", "--config", dso_file, "--since", "yesterday")
    assert bad_since.returncode == 2 and "--since: expected a duration" in bad_since.stderr
    async with Service(load_config(dso_file)):
        pass
    unknown = await uftp("outbox", "show", "no-such-id", "--config", dso_file)
    assert unknown.returncode == 1 and "no outbound message no-such-id" in unknown.stderr
    empty = await uftp("inbox", "list", "--config", dso_file)
    assert empty.returncode == 0 and empty.stdout == "no inbound messages match\n"


# -- PostgreSQL -------------------------------------------------------------------------------


async def test_the_commands_on_a_postgres_store(samples: Path, postgres_schema: Schema) -> None:
    dso_file = samples / "dso.toml"
    use_store(dso_file, postgres_schema.dsn)
    async with Service(load_config(dso_file)) as dso:
        sent = await dso.participant.send(TestMessage(), to=CRO_DOMAIN)  # the CRO is down
        await eventually(lambda: attempted(dso, sent.message_id, 1), timeout=10)

        listing = await uftp(
            "outbox", "list", "--config", str(dso_file), "--format", "json", "--peer", CRO_DOMAIN
        )
        cancel = await uftp("outbox", "cancel", sent.message_id, "--config", str(dso_file))
        status = await uftp("status", "--config", str(dso_file))

    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)
    assert row["message_id"] == sent.message_id and row["status"] == "pending"
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stderr
    assert status.returncode == 0, status.stderr
    assert "1 cancelled" in status.stdout and postgres_schema.name not in status.stdout.split()[0]
