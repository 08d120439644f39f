"""What an operator's monitoring sees of a running participant: Prometheus metrics scraped over
real HTTP from participants exchanging real messages, `/health` and `/ready` while the
participant starts, serves and stops, and the log lines of `serve` in both formats.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from adapter.config import load_config
from adapter.ops import housekeeping
from adapter.ops.service import Service
from adapter.uftp.messages import TestMessage
from tests.conftest import eventually
from tests.ops.conftest import CRO_DOMAIN, DSO_DOMAIN, uftp, use_store
from tests.postgres import PG_DSN, Schema
from tests.serve import serving


def with_metrics(config_file: Path, listen: str = "127.0.0.1:0") -> Path:
    with config_file.open("a") as out:
        out.write(f'\n[metrics]\nlisten = "{listen}"\n')
    return config_file


async def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the service's /metrics, by name and labels."""
    assert service.ops_server is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(service.ops_server.url("/metrics")) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_metrics_count_an_exchange_on_both_sides(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "DEPTHS_SECONDS", 0.1)
    cro_config = load_config(with_metrics(samples / "cro.toml"))
    dso_config = load_config(with_metrics(samples / "dso.toml"))
    async with Service(cro_config) as cro, Service(dso_config) as dso:
        await dso.participant.request(TestMessage(), to=CRO_DOMAIN, timeout=10)
        # A stranger's POST: refused before anything is stored, counted under "unknown".
        async with aiohttp.ClientSession() as session:
            stranger = b'<SignedMessage SenderDomain="x.test" SenderRole="DSO" Body="AAAA"/>'
            async with session.post(
                cro.participant.url(), data=stranger, headers={"Content-Type": "text/xml"}
            ) as response:
                assert response.status == 401
        await asyncio.sleep(0.3)  # a refresh of the queue depths
        at_cro, at_dso = await scrape(cro), await scrape(dso)

    assert (
        value(
            at_cro,
            "uftp_messages_received_total",
            type="TestMessage",
            peer=DSO_DOMAIN,
            outcome="new",
        )
        == 1
    )
    assert value(at_cro, "uftp_http_responses_total", status="200") == 1
    assert value(at_cro, "uftp_http_responses_total", status="401") == 1
    assert (
        value(at_cro, "uftp_inbound_refused_total", reason="InvalidSignature", peer="unknown") == 1
    )
    assert value(at_cro, "uftp_handler_seconds_count", type="TestMessage", outcome="ok") == 1
    assert value(at_cro, "uftp_store_commit_seconds_count") >= 2  # the message, its response
    # The CRO's response, delivered to the DSO.
    assert (
        value(
            at_cro,
            "uftp_messages_sent_total",
            type="TestMessageResponse",
            peer=DSO_DOMAIN,
            outcome="delivered",
        )
        == 1
    )
    assert (
        value(
            at_dso,
            "uftp_delivery_attempts_total",
            type="TestMessage",
            peer=CRO_DOMAIN,
            outcome="delivered",
            status="200",
        )
        == 1
    )
    assert value(at_dso, "uftp_delivery_seconds_count", peer=CRO_DOMAIN) == 1
    assert (
        value(
            at_dso,
            "uftp_messages_received_total",
            type="TestMessageResponse",
            peer=CRO_DOMAIN,
            outcome="new",
        )
        == 1
    )
    # Each participant its own registry: the DSO received no TestMessage, the CRO sent none.
    assert (
        value(
            at_dso,
            "uftp_messages_received_total",
            type="TestMessage",
            peer=DSO_DOMAIN,
            outcome="new",
        )
        == 0
    )
    assert value(at_dso, "uftp_outbox_pending") == 0 and value(at_dso, "uftp_ready") == 1
    version = importlib.metadata.version("uftp-adapter")
    assert value(at_cro, "uftp_info", version=version, role="CRO", domain=CRO_DOMAIN) == 1


async def test_the_queue_depths_follow_the_store(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "DEPTHS_SECONDS", 0.1)
    async with Service(load_config(with_metrics(samples / "dso.toml"))) as dso:
        await dso.participant.send(TestMessage(), to=CRO_DOMAIN)  # the CRO is down
        await dso.participant.send(TestMessage(), to=CRO_DOMAIN)

        async def two_pending() -> bool:
            at_dso = await scrape(dso)
            return value(at_dso, "uftp_outbox_pending") == 2

        await eventually(two_pending, timeout=5)
        at_dso = await scrape(dso)
    assert value(at_dso, "uftp_outbox_oldest_pending_seconds") > 0
    assert (
        value(
            at_dso,
            "uftp_delivery_attempts_total",
            type="TestMessage",
            peer=CRO_DOMAIN,
            outcome="temporary",
            status="none",
        )
        >= 2
    )


# -- health and readiness -------------------------------------------------------------------


async def test_ready_only_while_serving_health_throughout(
    samples: Path, postgres_schema: Schema
) -> None:
    """Starting: the store is slow to open (its schema lock is held elsewhere), so /ready
    answers 503 while /health answers 200. Stopping: a POST on the wire to a peer that hangs
    holds the stop, and /ready answers 503 meanwhile."""
    import asyncpg

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_post("/shapeshifter/api/v3/message", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dso_file = with_metrics(samples / "dso.toml")
    use_store(dso_file, postgres_schema.dsn)
    endpoint = f'endpoint = "http://127.0.0.1:{port}/shapeshifter/api/v3/message"'
    lines = dso_file.read_text().split("\n")
    dso_file.write_text(
        "\n".join(endpoint if line.startswith("endpoint = ") else line for line in lines)
    )
    service = Service(load_config(dso_file))
    assert service.ops_server is not None
    holder = await asyncpg.connect(PG_DSN)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"uftp-adapter:{postgres_schema.name}"
        )
        starting = asyncio.create_task(service.start())
        await eventually(lambda: service.ops_server is not None and service.ops_server.port != 0)
        await asyncio.sleep(0.3)
        assert not starting.done()
        assert await get(service.ops_server.url("/ready")) == (503, "not ready\n")
        assert await get(service.ops_server.url("/health")) == (200, "ok\n")
        await transaction.rollback()  # the store opens
        await asyncio.wait_for(starting, 10)
        assert await get(service.ops_server.url("/ready")) == (200, "ready\n")
        assert await get(
            service.participant.url().replace("/shapeshifter/api/v3/message", "/ready")
        ) == (200, "ready\n")

        await service.participant.send(TestMessage(), to=CRO_DOMAIN)
        await asyncio.sleep(0.3)  # its POST is on the wire, and the peer hangs
        stopping = asyncio.create_task(service.stop())
        await asyncio.sleep(0.5)
        assert not stopping.done()  # the POST has 5 s to return
        assert await get(service.ops_server.url("/ready")) == (503, "not ready\n")
        assert await get(service.ops_server.url("/health")) == (200, "ok\n")
        metrics = await get(service.ops_server.url("/metrics"))
        assert "uftp_ready 0.0" in metrics[1]
        await asyncio.wait_for(stopping, 15)
    finally:
        await holder.close()
        await runner.cleanup()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(service.ops_server.url("/health"))


def test_metrics_are_never_on_the_peers_port(samples: Path) -> None:
    from adapter.config import ConfigError

    listen = next(
        line.split('"')[1]
        for line in (samples / "dso.toml").read_text().splitlines()
        if line.startswith("listen = ")
    )
    with pytest.raises(ConfigError, match=r"metrics\.listen: must differ from participant\.listen"):
        load_config(with_metrics(samples / "dso.toml", listen))


# -- serve: its log lines, its metrics from the environment ----------------------------------


async def serve_briefly(config: Path, *options: str, env: dict[str, str]) -> tuple[str, str]:
    """`uftp-adapter OPTIONS serve --config CONFIG` until it serves, then SIGTERM: stdout and
    stderr. One TestMessage is POSTed meanwhile by a DSO in this process (logged at info)."""
    async with serving(config, program_options=options, env=env) as served:
        assert "serving CRO" in served.lines[0], served.output
        async with Service(load_config(config.parent / "dso.toml")) as dso:
            await dso.participant.request(TestMessage(), to=CRO_DOMAIN, timeout=10)
        if "UFTP_ADAPTER_METRICS_LISTEN" in env:
            status, text = await get(f"http://{env['UFTP_ADAPTER_METRICS_LISTEN']}/metrics")
            assert status == 200 and "uftp_messages_received_total" in text
    return served.stdout, served.stderr


async def test_serve_logs_one_json_object_per_line(samples: Path) -> None:
    from tests.test_run import free_port

    metrics = f"127.0.0.1:{free_port()}"
    out, err = await serve_briefly(
        samples / "cro.toml",
        "-v",
        "--log-format",
        "json",
        env={"UFTP_ADAPTER_METRICS_LISTEN": metrics},
    )

    lines = [line for line in (out + err).splitlines() if line]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert all(r["time"].endswith("Z") and "T" in r["time"] for r in records)
    messages = [r["message"] for r in records]
    assert any(m.startswith("serving CRO") and metrics in m for m in messages)
    assert "shutting down" in messages
    assert any(
        r["logger"] == "adapter.server" and r["message"].startswith("inbound TestMessage")
        for r in records
    )


async def test_serve_logs_text_lines_with_their_time(samples: Path) -> None:
    out, err = await serve_briefly(samples / "cro.toml", "-v", env={})

    assert out.startswith("serving CRO")
    lines = err.splitlines()
    assert lines and all(line[:4].isdigit() and line[10] == "T" for line in lines), err
    assert any(" uftp-adapter: INFO: adapter.server: inbound TestMessage" in line for line in lines)


async def test_version_is_the_installed_package_version() -> None:
    result = await uftp("--version")
    assert result.returncode == 0
    assert result.stdout == f"uftp-adapter {importlib.metadata.version('uftp-adapter')}\n"
