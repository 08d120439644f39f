"""Signed envelopes between this adapter and shapeshifter-uftp 2.4, in both directions.

A DSOPortfolioUpdate sealed here is opened and parsed by their `unseal_message`, and one
sealed by their `seal_message` (wrapped by their SignedMessage serializer, as their client
does) is opened here; both arrive equal field for field. Wrong keys fail on both sides, and
the keys this adapter writes (the 64-byte libsodium secret, the cs1 string holding signing
and encryption key) are the keys they use.

shapeshifter-uftp logs every message it signs or reads at DEBUG on its logger
"shapeshifter-uftp"; the fixture below quiets it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from base64 import b64decode, b64encode
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ss = pytest.importorskip("shapeshifter_uftp.uftp")
transport = pytest.importorskip("shapeshifter_uftp.transport")
exceptions = pytest.importorskip("shapeshifter_uftp.exceptions")

from lxml import etree  # noqa: E402

from adapter.interop.shapeshifter import from_shapeshifter, to_shapeshifter  # noqa: E402
from adapter.keys import (  # noqa: E402
    PrivateKeys,
    dns_txt_record,
    format_private,
    generate,
    load_private,
)
from adapter.uftp import (  # noqa: E402
    DSOPortfolioUpdate,
    DSOPortfolioUpdateCongestionPoint,
    DSOPortfolioUpdateConnection,
    InvalidSignature,
    RedispatchBy,
    Role,
    decode,
    encode,
    open_sealed,
    parse_cs1,
    parse_envelope,
    seal,
)

DSO = "dso.example.com"
CEST = timezone(timedelta(hours=2))


@pytest.fixture(autouse=True)
def _quiet_shapeshifter() -> Iterator[None]:
    logger = logging.getLogger("shapeshifter-uftp")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def picture(value: Any) -> Any:
    """A typed, field-for-field rendering (type names, enum types, datetime offsets kept)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            {f.name: picture(getattr(value, f.name)) for f in dataclasses.fields(value)},
        )
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        fields: dict[str, Any] = value._asdict()
        return (type(value).__name__, {k: picture(v) for k, v in fields.items()})
    if isinstance(value, list | tuple):
        return [type(value).__name__, *map(picture, value)]
    if isinstance(value, Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, datetime | date):
        return (type(value).__name__, value.isoformat())
    return value


def assert_same(actual: Any, expected: Any) -> None:
    assert picture(actual) == picture(expected)
    assert actual == expected


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def portfolio_update() -> DSOPortfolioUpdate:
    """Three congestion points, eleven connections, each optional attribute set and unset."""
    row = DSOPortfolioUpdateConnection

    def rows(point: int, count: int) -> tuple[DSOPortfolioUpdateConnection, ...]:
        return tuple(
            row(
                f"ean.8716859{point:04d}{n:07d}",
                date(2024, 5, 1 + n),
                date(2024, 12, 31) if n % 2 else None,
            )
            for n in range(count)
        )

    return DSOPortfolioUpdate(
        version="3.1.0",
        sender_domain=DSO,
        recipient_domain="cro.example.org",
        time_stamp=datetime(2024, 5, 1, 9, 15, 0, 250000, tzinfo=CEST),
        message_id=uuid(1),
        conversation_id=uuid(2),
        time_zone="Europe/Amsterdam",
        congestion_points=(
            DSOPortfolioUpdateCongestionPoint(
                entity_address="ean.871685900000000001",
                start_period=date(2024, 5, 1),
                end_period=date(2025, 4, 30),
                mutex_offers_supported=True,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.AGR,
                connections=rows(1, 5),
            ),
            DSOPortfolioUpdateCongestionPoint(
                entity_address="ea1.2007-11.net.example:cp-2",
                start_period=date(2024, 6, 1),
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.AGR,
                connections=rows(2, 1),
            ),
            DSOPortfolioUpdateCongestionPoint(
                entity_address="ean.871685900000000003",
                start_period=date(2024, 5, 1),
                mutex_offers_supported=False,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.DSO,
                connections=rows(3, 5),
            ),
        ),
    )


MODEL = portfolio_update()


@pytest.fixture(scope="module")
def keys() -> PrivateKeys:
    return generate()


def their_public(keys: PrivateKeys) -> str:
    """The public key as their functions take it: base64 of the 32-byte signing key."""
    return b64encode(keys.public.signing).decode("ascii")


def their_private(keys: PrivateKeys) -> str:
    """The secret key as their functions take it: base64 of libsodium's 64-byte secret."""
    return b64encode(keys.signing).decode("ascii")


def sealed_here(keys: PrivateKeys) -> bytes:
    return seal(encode(MODEL), keys.signing, DSO, Role.DSO)


def sealed_there(keys: PrivateKeys) -> bytes:
    """Their SignedMessage document for MODEL, built the way their client builds it."""
    raw = transport.seal_message(to_shapeshifter(MODEL), their_private(keys))
    signed = ss.SignedMessage(sender_domain=DSO, sender_role=ss.UsefRole.DSO, body=raw)
    document: str = transport.to_xml(signed)
    return document.encode("utf-8")


def body_of(envelope: bytes) -> bytes:
    """The base64-decoded Body attribute, read with plain lxml (neither library's code)."""
    return b64decode(etree.fromstring(envelope).get("Body"))


def test_sealed_here_is_opened_and_parsed_there(keys: PrivateKeys) -> None:
    envelope = sealed_here(keys)
    theirs = transport.unseal_message(body_of(envelope), their_public(keys))
    assert type(theirs) is ss.DsoPortfolioUpdate
    assert_same(from_shapeshifter(theirs), MODEL)


def test_our_envelope_is_read_by_their_signed_message_parser(keys: PrivateKeys) -> None:
    # Their service receives the SignedMessage through their own XML binding.
    signed = transport.from_xml(sealed_here(keys))
    assert type(signed) is ss.SignedMessage
    assert (signed.sender_domain, signed.sender_role) == (DSO, "DSO")
    theirs = transport.unseal_message(signed.body, their_public(keys))
    assert_same(from_shapeshifter(theirs), MODEL)


def test_sealed_there_is_opened_and_parsed_here(keys: PrivateKeys) -> None:
    envelope = sealed_there(keys)
    signed = parse_envelope(envelope)
    assert (signed.sender_domain, signed.sender_role) == (DSO, Role.DSO)
    assert signed.sealed == body_of(envelope)
    assert_same(decode(open_sealed(signed.sealed, [keys.public.signing])), MODEL)


def test_their_raw_seal_wrapped_as_our_body_is_opened_here(keys: PrivateKeys) -> None:
    raw = transport.seal_message(to_shapeshifter(MODEL), their_private(keys))
    envelope = (
        f'<SignedMessage SenderDomain="{DSO}" SenderRole="DSO" '
        f'Body="{b64encode(raw).decode("ascii")}"/>'
    ).encode("ascii")
    signed = parse_envelope(envelope)
    assert signed.sealed == raw
    assert_same(decode(open_sealed(signed.sealed, [keys.public.signing])), MODEL)


def test_wrong_key_fails_here(keys: PrivateKeys) -> None:
    sealed = parse_envelope(sealed_there(keys)).sealed
    with pytest.raises(InvalidSignature):
        open_sealed(sealed, [generate().public.signing])
    # While a key rotates, the right one among several still opens it.
    assert decode(open_sealed(sealed, [generate().public.signing, keys.public.signing])) == MODEL


def test_wrong_key_fails_there(keys: PrivateKeys) -> None:
    body = body_of(sealed_here(keys))
    with pytest.raises(exceptions.InvalidSignatureException):
        transport.unseal_message(body, their_public(generate()))


def test_tampered_body_fails_on_both_sides(keys: PrivateKeys) -> None:
    raw = bytearray(body_of(sealed_here(keys)))
    raw[-20] ^= 0x01  # one bit of the inner XML, after the 64-byte signature
    with pytest.raises(InvalidSignature):
        open_sealed(bytes(raw), [keys.public.signing])
    with pytest.raises(exceptions.InvalidSignatureException):
        transport.unseal_message(bytes(raw), their_public(keys))


def test_our_64_byte_cs1_string_works_on_both_sides(
    keys: PrivateKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cs1 string we publish (signing + encryption key) is the one their lookup reads."""
    cs1 = keys.public.to_cs1()
    assert len(b64decode(cs1.removeprefix("cs1."))) == 64
    # Here: the signing half of the cs1 string opens their seal.
    sealed = parse_envelope(sealed_there(keys)).sealed
    assert decode(open_sealed(sealed, [parse_cs1(cs1).signing])) == MODEL
    # There: serve the TXT record we would publish to their DNS lookup (a per-test domain,
    # as their lookup caches by domain and role for an hour).
    domain = "dso-cs1-test.example.com"
    record = dns_txt_record(domain, Role.DSO, keys.public)
    match = re.fullmatch(r'(\S+)\. IN TXT "(\S+)"', record)
    assert match is not None
    name, published = match.groups()
    asked: list[str] = []

    def resolve(qname: str, rdtype: str) -> Any:
        asked.append(qname)
        assert (qname, rdtype) == (name, "TXT")
        answer = SimpleNamespace(strings=[published.encode("ascii")])
        return SimpleNamespace(response=SimpleNamespace(answer=[[answer]]))

    monkeypatch.setattr(transport.dns.resolver, "resolve", resolve)
    signing, encryption = transport.get_keys(domain, "DSO")
    assert asked == [name]
    assert signing == their_public(keys)
    assert b64decode(encryption) == keys.public.encryption
    theirs = transport.unseal_message(body_of(sealed_here(keys)), transport.get_key(domain, "DSO"))
    assert_same(from_shapeshifter(theirs), MODEL)


def test_our_key_file_secret_is_their_private_key(keys: PrivateKeys) -> None:
    line = next(
        line for line in format_private(keys).splitlines() if line.startswith("signing-secret")
    )
    private = line.split("=", 1)[1].strip()
    raw = transport.seal_message(to_shapeshifter(MODEL), private)
    assert decode(open_sealed(raw, [keys.public.signing])) == MODEL


def test_their_key_file_signs_here(keys: PrivateKeys, tmp_path: Path) -> None:
    # Their key format: one base64 line of the 64-byte secret, which our loader reads.
    path = tmp_path / "dso.key"
    path.write_text(their_private(keys) + "\n")
    path.chmod(0o600)
    loaded = load_private(path)
    body = body_of(seal(encode(MODEL), loaded.signing, DSO, Role.DSO))
    theirs = transport.unseal_message(body, their_public(keys))
    assert_same(from_shapeshifter(theirs), MODEL)
