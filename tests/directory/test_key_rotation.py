"""A CRO replaces its signing key while a DSO keeps sending, with DNS in between, and no
message is refused (message-transport-mechanism.md, footnote 17: both keys are published
while a key is replaced).

The DSO's cache of the CRO's record is kept from expiring on its own: the DSO learns of the
new key only because a signature that fails with cached keys makes it ask DNS once more."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from adapter import cli
from adapter.directory.dns import DnsDirectory
from adapter.participant import Participant
from adapter.rotation import KeyRing, activate, next_path, rotate
from adapter.store.base import OutboundStatus
from adapter.testing import composed
from adapter.uftp.messages import Result
from tests.directory.dnslab import txt
from tests.directory.sites import CRO, Site, portfolio_update, records

#: Unbound's copy of a record lasts its TTL (1 s in `records`).
RESOLVER_TTL = 1.5


def published_strings(output: str) -> str:
    """The TXT string of the record a `keys` command printed."""
    match = re.search(r'IN TXT "([^"]+)"', output)
    assert match, output
    return match.group(1)


def publish_cro_keys(site: Site, strings: str) -> None:
    others = [line for line in records(site.keys) if not line.startswith("_cro._usef.cro ")]
    site.lab.publish("example.test", [*others, txt("_cro._usef.cro", strings, ttl=1)])


async def test_a_cro_rotates_its_key_while_a_dso_keeps_sending(
    site: Site, pair: tuple[Participant, Participant], capsys: pytest.CaptureFixture[str]
) -> None:
    dso, cro = pair
    keys_dir = site.folder / "keys"
    first = await dso.request(composed(portfolio_update()), to=CRO, timeout=20)
    assert first.result is Result.ACCEPTED
    (source,) = dso.directory.sources  # type: ignore[attr-defined]
    assert isinstance(source, DnsDirectory)
    source._clock = lambda: 0.0  # type: ignore[method-assign] # the DSO's cache never expires

    answers: list[Result] = []
    last_answer = [first.message_id]
    stop = asyncio.Event()

    async def keep_sending() -> None:
        while not stop.is_set():
            response = await dso.request(composed(portfolio_update()), to=CRO, timeout=15)
            answers.append(response.result)
            last_answer[0] = response.message_id
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(keep_sending())
    try:
        await asyncio.sleep(0.5)
        # 1. The next key, published beside the current one.
        argv = ["--domain", CRO, "--role", "CRO", "--dir", str(keys_dir)]
        assert cli.main(["keys", "rotate", "cro", *argv]) == 0
        both = published_strings(capsys.readouterr().out)
        assert len(both.split()) == 2
        publish_cro_keys(site, both)
        await asyncio.sleep(RESOLVER_TTL)
        sent_before = len(answers)
        # 2. Signing with the next key: the running CRO notices the new NAME.key itself.
        assert cli.main(["keys", "activate", "cro", *argv]) == 0
        still_both = published_strings(capsys.readouterr().out)
        assert set(still_both.split()) == set(both.split())
        await asyncio.sleep(2.5)
        assert cro._keys.current.public.to_cs1() == both.split()[1]
        # 3. The old key withdrawn.
        publish_cro_keys(site, both.split()[1])
        await asyncio.sleep(RESOLVER_TTL + 1)
    finally:
        stop.set()
        await sender

    assert len(answers) > sent_before + 5, answers  # messages went both ways throughout
    assert set(answers) == {Result.ACCEPTED}
    # Nothing the CRO sent was refused by the DSO (a 401 would have failed the delivery and
    # left the DSO's request unanswered), nor is anything waiting to be sent again.
    assert await cro.store.pending_outbound() == []
    last = await cro.store.get_outbound(last_answer[0])
    assert last is not None and last.status is OutboundStatus.DELIVERED


def test_rotate_then_activate_swaps_the_files(tmp_path: Path) -> None:
    from adapter.keys import generate, load_private, write_private

    path = tmp_path / "cro.key"
    original = generate()
    write_private(path, original)
    current, upcoming = rotate(path)
    assert current == original.public
    ring = KeyRing.load(path)
    assert ring.upcoming is not None and ring.upcoming.public == upcoming
    new, old = activate(path)
    assert (new, old) == (upcoming, original.public)
    assert load_private(path).public == upcoming
    assert not next_path(path).exists()
    assert load_private(tmp_path / "cro.previous.key").public == original.public
    assert (tmp_path / "cro.pub").read_text().strip() == upcoming.to_cs1()


def test_a_configured_date_switches_to_the_next_key(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from adapter.keys import generate, write_private

    path = tmp_path / "dso.key"
    original = generate()
    write_private(path, original)
    _, upcoming = rotate(path)
    at = datetime(2026, 12, 8, 6, tzinfo=UTC)
    ring = KeyRing.load(path, at)
    assert ring.signing(at - timedelta(seconds=1)) == original.signing
    assert ring.signing(at)[32:] == upcoming.signing


def test_the_keys_commands_refuse_a_second_rotation_and_an_activation_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--domain", CRO, "--role", "CRO", "--dir", str(tmp_path)]
    assert cli.main(["keys", "generate", "cro", "--dir", str(tmp_path)]) == 0
    assert cli.main(["keys", "activate", "cro", *argv]) == cli.EXIT_REFUSED
    assert "keys rotate cro" in capsys.readouterr().err
    assert cli.main(["keys", "rotate", "cro", *argv]) == 0
    record = capsys.readouterr().out.splitlines()[-1]
    assert record.startswith(f"_CRO._usef.{CRO}. IN TXT ")
    upcoming = (tmp_path / "cro.next.key").read_bytes()
    assert cli.main(["keys", "rotate", "cro", *argv]) == cli.EXIT_REFUSED
    assert "rotation is under way" in capsys.readouterr().err
    assert (tmp_path / "cro.next.key").read_bytes() == upcoming  # never overwritten
    assert cli.main(["keys", "activate", "cro", *argv]) == 0
    assert (tmp_path / "cro.key").read_bytes() == upcoming
