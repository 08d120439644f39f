"""HTTPS between real participants on loopback, with a throwaway CA: the happy path both ways,
and each way a TLS setup can refuse a delivery (no client certificate, an untrusted server,
a protocol older than TLS 1.2)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapter import tls
from adapter.assemble import TlsContexts
from adapter.config import TlsSettings, load_config
from adapter.directory import Peer
from adapter.keys import generate, write_private
from adapter.participant import DeliveryFailed, Participant
from adapter.router import HandlerContext, Router
from adapter.store.base import OutboundStatus
from adapter.testing import FAST_DELIVERY, Network, composed
from adapter.uftp.messages import (
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    PayloadResponse,
    Result,
    Role,
)
from tests.certs import Pki, make_pki
from tests.uftp.samples import make_dso_portfolio_update

DSO = "dso.example-grid.nl"
CRO = "cro.example.com"
#: Retries for a second and a half, then the delivery expires: failures end quickly.
SHORT = dataclasses.replace(FAST_DELIVERY, deadline_seconds=1.5, request_timeout_seconds=1.0)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "tls")


class Cro:
    """A CRO router that accepts every portfolio update and remembers who sent one."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.router = Router()

        @self.router.on(DSOPortfolioUpdate)
        async def accept(message: DSOPortfolioUpdate, ctx: HandlerContext) -> PayloadResponse:
            self.handled.append(ctx.sender_domain)
            return DSOPortfolioUpdateResponse()


def create(
    network: Network, domain: str, role: Role, settings: TlsSettings, **options: Any
) -> Participant:
    """A participant whose contexts come from `settings`, as `from_config` builds them."""
    return network.create(
        domain,
        role,
        tls=TlsContexts(tls.server_context(settings), tls.client_context(settings)),
        **options,
    )


async def test_request_and_response_over_mutual_tls(network: Network, pki: Pki) -> None:
    cro_side = Cro()
    cro = create(network, CRO, Role.CRO, pki.server(), router=cro_side.router)
    dso = create(network, DSO, Role.DSO, pki.server())
    await network.start(cro, dso)
    network.introduce(cro, dso)
    assert cro.url().startswith("https://127.0.0.1:")
    assert dso.url().startswith("https://127.0.0.1:")

    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    assert response.result is Result.ACCEPTED
    assert cro_side.handled == [DSO]
    # The response came back over HTTPS too: the CRO's delivery of it, to the DSO's https URL.
    sent_back = await cro.store.get_outbound(response.message_id)
    assert sent_back is not None and sent_back.endpoint.startswith("https://")
    assert sent_back.status is OutboundStatus.DELIVERED


async def test_from_config_serves_https_and_requires_client_certificates(
    network: Network, pki: Pki, tmp_path: Path
) -> None:
    dso = create(network, DSO, Role.DSO, pki.server())
    await network.start(dso)
    cro_keys = generate()
    write_private(tmp_path / "keys" / "cro.key", cro_keys)
    config_file = tmp_path / "config" / "cro.toml"
    config_file.parent.mkdir()
    config_file.write_text(
        f"""
[participant]
domain = "{CRO}"
role = "CRO"
signing_key = "../keys/cro.key"
listen = "127.0.0.1:0"
store = "sqlite:../var/cro.sqlite3"
versions = ["3.1.0"]

[tls]
certificate = "../tls/server.crt"
private_key = "../tls/server.key"
client_ca = "../tls/ca.crt"
ca = "../tls/ca.crt"
client_certificate = "../tls/client.crt"
client_private_key = "../tls/client.key"

[[peers]]
domain = "{DSO}"
role = "DSO"
endpoint = "{dso.url()}"
public_keys = ["{network.keys[DSO].public.to_cs1()}"]
""",
        encoding="utf-8",
    )
    cro = Participant.from_config(load_config(config_file), router=Cro().router)
    network.participants.append(cro)
    await cro.start()
    assert cro.url().startswith("https://")
    dso.directory.add(  # type: ignore[attr-defined]
        Peer(CRO, Role.CRO, cro.url(), (cro_keys.public.signing,))
    )

    response = await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)
    assert response.result is Result.ACCEPTED

    health = cro.url().replace("/shapeshifter/api/v3/message", "/health")
    with_certificate = tls.client_context(pki.server())
    async with aiohttp.ClientSession() as session:
        async with session.get(health, ssl=with_certificate) as answer:
            assert await answer.text() == "ok\n"
        with pytest.raises(aiohttp.ClientError):  # no client certificate
            async with session.get(health, ssl=tls.client_context(TlsSettings(ca=pki.ca))):
                pass


async def test_client_without_certificate_cannot_deliver(network: Network, pki: Pki) -> None:
    cro_side = Cro()
    cro = create(network, CRO, Role.CRO, pki.server(), router=cro_side.router)
    without_certificate = dataclasses.replace(
        pki.server(require_client_certificates=False),
        client_certificate=None,
        client_private_key=None,
    )
    dso = create(network, DSO, Role.DSO, without_certificate, delivery=SHORT)
    await network.start(cro, dso)
    network.introduce(cro, dso)

    with pytest.raises(DeliveryFailed) as failed:
        await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    # With TLS 1.3 the server's refusal arrives after the client finished its handshake: the
    # client sees the connection reset (or the alert), never an HTTP status. That is
    # classified as temporary, retried until the deadline, and reported as expired.
    assert failed.value.status is OutboundStatus.EXPIRED
    assert failed.value.result.status is None
    attempts = await dso.store.attempts(failed.value.message_id)
    assert len(attempts) >= 2
    assert all(a.http_status is None and a.outcome == "temporary" for a in attempts)
    assert all(a.detail for a in attempts)
    assert cro_side.handled == []


@pytest.mark.parametrize(
    "trust",
    [TlsSettings(), None],
    ids=["system trust store", "another CA"],
)
async def test_untrusted_server_certificate_fails_delivery_at_once_as_our_configuration(
    network: Network, pki: Pki, trust: TlsSettings | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate our `[tls] ca` does not verify is a configuration error, not the peer's
    outage: retrying for the hour of the deadline cannot fix it. The delivery fails at the
    first attempt, and the log says which setting to look at."""
    cro_side = Cro()
    cro = create(
        network,
        CRO,
        Role.CRO,
        pki.server(require_client_certificates=False),
        router=cro_side.router,
    )
    trust = trust or TlsSettings(ca=pki.other_ca)
    long_deadline = dataclasses.replace(SHORT, deadline_seconds=3600.0)
    dso = create(network, DSO, Role.DSO, trust, delivery=long_deadline)
    await network.start(cro, dso)
    network.introduce(cro, dso)
    assert dso.url().startswith("http://")  # no certificate of its own: it serves plain HTTP

    with pytest.raises(DeliveryFailed) as failed:
        await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    assert failed.value.status is OutboundStatus.FAILED
    assert "could not be sent" in str(failed.value)
    record = await dso.store.get_outbound(failed.value.message_id)
    assert record is not None and record.status is OutboundStatus.FAILED
    [attempt] = await dso.store.attempts(failed.value.message_id)
    assert (attempt.http_status, attempt.outcome) == (None, "permanent")
    assert "TLS configuration error" in attempt.detail and "[tls] ca" in attempt.detail
    assert "unable to get local issuer certificate" in attempt.detail
    assert "peer refused" not in attempt.detail  # nothing blames the peer
    [logged] = [
        r
        for r in caplog.records
        if r.name == "adapter.participant" and "failed for good" in r.getMessage()
    ]
    assert logged.levelno == logging.ERROR and "[tls] ca" in logged.getMessage()
    assert cro_side.handled == []


async def test_a_certificate_for_another_host_fails_delivery_at_once(
    network: Network, pki: Pki
) -> None:
    """The certificate is for 127.0.0.1; the endpoint is 127.0.0.2: not retried either."""
    cro_side = Cro()
    cro = create(
        network,
        CRO,
        Role.CRO,
        pki.server(require_client_certificates=False),
        router=cro_side.router,
        host="127.0.0.2",
    )
    long_deadline = dataclasses.replace(SHORT, deadline_seconds=3600.0)
    dso = create(network, DSO, Role.DSO, TlsSettings(ca=pki.ca), delivery=long_deadline)
    await network.start(cro, dso)
    network.introduce(cro, dso)

    with pytest.raises(DeliveryFailed) as failed:
        await dso.request(composed(make_dso_portfolio_update()), to=CRO, timeout=10)

    [attempt] = await dso.store.attempts(failed.value.message_id)
    assert attempt.outcome == "permanent"
    assert "mismatch" in attempt.detail and "[tls] ca" in attempt.detail
    assert cro_side.handled == []


def test_contexts_refuse_anything_below_tls_1_2(pki: Pki) -> None:
    server = tls.server_context(pki.server())
    assert server is not None
    assert server.minimum_version is ssl.TLSVersion.TLSv1_2
    assert server.verify_mode is ssl.CERT_REQUIRED
    assert tls.client_context(pki.server()).minimum_version is ssl.TLSVersion.TLSv1_2
    assert tls.client_context(TlsSettings()).minimum_version is ssl.TLSVersion.TLSv1_2
    assert tls.server_context(TlsSettings()) is None  # no certificate: plain HTTP


async def _handshake(port: int, context: ssl.SSLContext) -> str:
    """The TLS version a handshake with 127.0.0.1:`port` agrees on (raises when refused)."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        version = writer.get_extra_info("ssl_object").version()
    finally:
        writer.close()
    return str(version)


def _legacy_client(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers nothing newer than `maximum` and does not verify (not the point)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 hides TLS < 1.2 above level 0
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_tls_1_1_is_refused(network: Network, pki: Pki) -> None:
    cro = create(network, CRO, Role.CRO, pki.server(require_client_certificates=False))
    await network.start(cro)
    old_client = _legacy_client(ssl.TLSVersion.TLSv1_1)

    # Control: a server that still allows TLS 1.1 shows whether this OpenSSL can speak it.
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(pki.server_certificate, pki.server_key)
    control = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=permissive)
    try:
        try:
            await _handshake(control.sockets[0].getsockname()[1], old_client)
        except (ssl.SSLError, OSError) as exc:
            pytest.skip(f"the local OpenSSL cannot speak TLS 1.1 at all ({exc})")
    finally:
        control.close()
        await control.wait_closed()

    with pytest.raises((ssl.SSLError, OSError)):
        await _handshake(cro.port, old_client)
    assert await _handshake(cro.port, _legacy_client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
