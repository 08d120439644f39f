"""The flex workflow as operators run it, each command a process of its own: the AGR serves and
takes a FlexRequest, the DSO serves and takes the FlexOffer, the AGR serves again and takes
the FlexOrder; the listings read the stores while the participants serve."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapter.testing import free_port
from adapter.uftp import codec
from adapter.uftp.messages import DPrognosisISP
from tests.cli import uftp
from tests.flex.messages import d_prognosis, metering, reservation_update
from tests.serve import serving

DSO, AGR = "dso.flex-demo.test", "agr.flex-demo.test"
CP = "ea1.2026-01.test.flex-demo:cp-north"


def participant_toml(
    domain: str, role: str, port: int, peer: str, peer_role: str, peer_port: int, flex: str
) -> str:
    return f"""
[participant]
domain = "{domain}"
role = "{role}"
signing_key = "keys/{role.lower()}.key"
listen = "127.0.0.1:{port}"
store = "sqlite:var/{role.lower()}.sqlite3"
versions = ["3.1.0"]

[delivery]
request_timeout_seconds = 5
backoff_initial_seconds = 0.2
backoff_max_seconds = 1.0

[flex]
{flex}

[[peers]]
domain = "{peer}"
role = "{peer_role}"
endpoint = "http://127.0.0.1:{peer_port}/shapeshifter/api/v3/message"
public_keys_file = "keys/{peer_role.lower()}.pub"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("dso", "agr"):
        assert uftp("keys", "generate", name, "--dir", str(tmp_path / "keys")).returncode == 0
    (tmp_path / "var").mkdir()
    dso_port, agr_port = free_port(), free_port()
    (tmp_path / "dso.toml").write_text(
        participant_toml(
            DSO, "DSO", dso_port, AGR, "AGR", agr_port, f'congestion_points = ["{CP}"]'
        )
    )
    (tmp_path / "agr.toml").write_text(
        participant_toml(AGR, "AGR", agr_port, DSO, "DSO", dso_port, 'isp_duration = "PT15M"')
    )
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    (tmp_path / "request.toml").write_text(
        f"""congestion_point = "{CP}"
period = {day.isoformat()}

[[isps]]
start = 1
duration = 68
min_power = -500000
max_power = 1000000

[[isps]]
start = 69
duration = 8
min_power = -250000
max_power = 0
disposition = "Requested"
"""
    )
    (tmp_path / "offer.json").write_text(
        json.dumps(
            {
                "currency": "EUR",
                "options": [
                    {
                        "reference": "full",
                        "price": "1250.00",
                        "isps": [{"start": 69, "duration": 8, "power": -250000}],
                    },
                    {
                        "reference": "half",
                        "price": "600.00",
                        "min_activation_factor": "0.50",
                        "isps": [{"start": 69, "duration": 8, "power": -125000}],
                    },
                ],
            }
        )
    )
    return tmp_path


def sent_id(stdout: str, kind: str) -> str:
    match = re.search(rf"^{kind} ([0-9a-f-]{{36}}) to ", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


async def test_request_offer_order_from_the_command_line(folder: Path) -> None:
    dso, agr = str(folder / "dso.toml"), str(folder / "agr.toml")
    async with serving(folder / "agr.toml"):
        result = uftp("dso", "flex-request", str(folder / "request.toml"), "--config", dso)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FlexRequestResponse Accepted" in result.stdout
        request_id = sent_id(result.stdout, "FlexRequest")

        # The same file again is revision 2; a request for ISPs the day does not have is not.
        bad = folder / "bad.toml"
        bad.write_text((folder / "request.toml").read_text().replace("start = 69", "start = 97"))
        refused = uftp("dso", "flex-request", str(bad), "--config", dso)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "ISPs out of bounds" in refused.stdout

        listed = uftp("agr", "requests", "--config", agr, "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rows = {row["message_id"]: row for row in json.loads(listed.stdout)}
        assert rows[request_id]["standing"] == "accepted"
        assert [row["revision"] for row in rows.values()] == [1, 2]
        second = next(row for row in rows.values() if row["revision"] == 2)
        assert "ISPs out of bounds" in second["reason"]

    async with serving(folder / "dso.toml"):
        result = uftp("agr", "offer", request_id, str(folder / "offer.json"), "--config", agr)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FlexOfferResponse Accepted" in result.stdout
        offer_id = sent_id(result.stdout, "FlexOffer")
        listed = uftp("dso", "offers", "--config", dso)
        assert listed.returncode == 0, listed.stderr
        assert offer_id in listed.stdout and "accepted" in listed.stdout
        assert "option half: 600.00 EUR (min activation 0.50)" in listed.stdout

    async with serving(folder / "agr.toml"):
        result = uftp(
            "dso",
            "order",
            offer_id,
            "--option",
            "half",
            "--activation-factor",
            "0.5",
            "--config",
            dso,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FlexOrderResponse Accepted" in result.stdout
        [offer] = json.loads(uftp("agr", "offers", "--config", agr, "--format", "json").stdout)
        assert (offer["message_id"], offer["standing"]) == (offer_id, "ordered")

        again = uftp("dso", "order", offer_id, "--option", "full", "--config", dso)
        assert again.returncode == 1
        assert f"the FlexOffer {offer_id} is ordered" in again.stderr


async def test_reservations_prognoses_and_metering_sent_with_send_and_listed(folder: Path) -> None:
    """The messages without a command of their own go with `send`; the receiver's flex
    handlers check and keep them for `agr reservations`, `dso prognoses`, `dso metering`."""
    dso, agr = str(folder / "dso.toml"), str(folder / "agr.toml")
    coming = (datetime.now(UTC) + timedelta(days=2)).date()
    past = (datetime.now(UTC) - timedelta(days=2)).date()
    files = {
        "fru.xml": reservation_update(period=coming, congestion_point=CP),
        "dp.xml": d_prognosis(period=coming, congestion_point=CP),
        "dp-short.xml": d_prognosis(
            period=coming, congestion_point=CP, revision=2, isps=(DPrognosisISP(1, 0, 95),)
        ),
        "metering.xml": metering(period=past),
    }
    for name, message in files.items():
        (folder / name).write_bytes(codec.encode(message))

    async with serving(folder / "agr.toml"):
        sent = uftp("send", "--config", dso, "--to", AGR, str(folder / "fru.xml"))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "FlexReservationUpdateResponse Accepted" in sent.stdout
        listed = uftp("agr", "reservations", "--config", agr)
        assert listed.returncode == 0, listed.stderr
        assert f"from {DSO}  {CP}  {coming}  contract contract-2026" in listed.stdout
        assert "accepted" in listed.stdout
        assert "ISP 69-76: -200000 W reserved" in listed.stdout

    async with serving(folder / "dso.toml"):
        sent = uftp("send", "--config", agr, "--to", DSO, str(folder / "dp.xml"))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        short = uftp("send", "--config", agr, "--to", DSO, str(folder / "dp-short.xml"))
        assert short.returncode == 1, short.stdout + short.stderr
        assert "Not every ISP of the Period has a Power" in short.stdout
        sent = uftp("send", "--config", agr, "--to", DSO, str(folder / "metering.xml"))
        assert sent.returncode == 0, sent.stdout + sent.stderr

        rows = json.loads(uftp("dso", "prognoses", "--config", dso, "--format", "json").stdout)
        assert [(row["revision"], row["standing"]) for row in rows] == [
            (1, "accepted"),
            (2, "rejected"),
        ]
        assert rows[0]["isps"] == [{"start": 1, "duration": 96, "power": 300000}]
        listed = uftp("dso", "metering", "--config", dso)
        assert listed.returncode == 0, listed.stderr
        assert f"from {AGR}  E8712345678901234  {past}  revision 1  accepted" in listed.stdout
        assert "    Power in kW: 96 ISPs" in listed.stdout


async def test_the_flex_commands_use_the_running_serve(folder: Path) -> None:
    """Both participants serve throughout: each sending command goes through its own
    participant's serve (the admin socket), which records and settles as it sends."""
    dso, agr = str(folder / "dso.toml"), str(folder / "agr.toml")
    through = "using the running serve"
    async with serving(folder / "agr.toml"), serving(folder / "dso.toml"):
        result = uftp("-v", "dso", "flex-request", str(folder / "request.toml"), "--config", dso)
        assert result.returncode == 0, result.stdout + result.stderr
        assert through in result.stderr
        assert "FlexRequestResponse Accepted" in result.stdout
        request_id = sent_id(result.stdout, "FlexRequest")
        # The next Revision is read from the book the running serve writes: 2, accepted.
        again = uftp("dso", "flex-request", str(folder / "request.toml"), "--config", dso)
        assert again.returncode == 0, again.stdout + again.stderr
        rows = json.loads(uftp("agr", "requests", "--config", agr, "--format", "json").stdout)
        assert [(row["revision"], row["standing"]) for row in rows] == [
            (1, "accepted"),
            (2, "accepted"),
        ]

        result = uftp("-v", "agr", "offer", request_id, str(folder / "offer.json"), "--config", agr)
        assert result.returncode == 0, result.stdout + result.stderr
        assert through in result.stderr
        offer_id = sent_id(result.stdout, "FlexOffer")

        result = uftp("-v", "dso", "order", offer_id, "--option", "full", "--config", dso)
        assert result.returncode == 0, result.stdout + result.stderr
        assert through in result.stderr and "FlexOrderResponse Accepted" in result.stdout
        [row] = json.loads(uftp("dso", "offers", "--config", dso, "--format", "json").stdout)
        assert row["standing"] == "ordered"
        # The serve settled the offer as the order left: a second order is refused here.
        twice = uftp("dso", "order", offer_id, "--option", "full", "--config", dso)
        assert twice.returncode == 1 and f"the FlexOffer {offer_id} is ordered" in twice.stderr

        result = uftp("-v", "agr", "revoke", offer_id, "--config", agr)
        assert result.returncode == 1, result.stdout + result.stderr
        assert through in result.stderr
        assert "FlexOffer already ordered" in result.stdout
