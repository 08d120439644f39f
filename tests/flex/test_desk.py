"""The files the flex commands read (adapter.flex.desk): the README's example as written, and
mistakes named by file and field."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.config import parse_config
from adapter.flex.desk import FlexFileError, load_flex_request, load_offer, market_of, order_for
from adapter.uftp.messages import AvailableRequested
from tests.flex.messages import MARKET, flex_offer, flex_request

README = Path(__file__).parents[2] / "README.md"


def readme_request(tmp_path: Path) -> Path:
    [text] = [
        block
        for block in re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.DOTALL)
        if block.startswith("congestion_point")
    ]
    path = tmp_path / "request.toml"
    path.write_text(text)
    return path


def test_the_readmes_request_file_reads_as_written(tmp_path: Path) -> None:
    request = load_flex_request(readme_request(tmp_path), MARKET, revision=4)
    assert request.revision == 4
    assert [isp.disposition for isp in request.isps] == [
        AvailableRequested.AVAILABLE,
        AvailableRequested.REQUESTED,
    ]
    # Expiry by default: when the first Requested ISP (69: 17:00 local) begins.
    assert request.expiration_date_time == datetime(2026, 12, 8, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "period = 2026-12-08\n[[isps]]\nstart=1\nmin_power=0\nmax_power=1\n",
            "congestion_point: missing",
        ),
        ('congestion_point = "x"\nperiod = 2026-12-08\nisps = []\n', "isps: expected one table"),
        (
            'congestion_point = "x"\nperiod = 2026-12-08\n[[isps]]\nstart=1\nmin_power=0\n'
            'max_power=1\ndisposition="Wanted"\n',
            "isps[0].disposition: expected 'Requested' or 'Available'",
        ),
        ('congestion_point = "x"\nperiode = 2026-12-08\n', "periode: unknown field"),
        (
            'congestion_point = "x"\nperiod = 2026-12-08\n[[isps]]\nstart=1\nmax_powr=1\n',
            "isps[0].max_powr: unknown field (expected one of: disposition, duration, "
            "max_power, min_power, start); did you mean 'max_power'?",
        ),
        (
            "congestion_point = 5\nperiod = 2026-12-08\n"
            "[[isps]]\nstart=1\nmin_power=0\nmax_power=1\n",
            "congestion_point: expected a string, got 5",
        ),
    ],
)
def test_a_mistake_is_named_by_file_and_field(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "request.toml"
    path.write_text(text)
    with pytest.raises(FlexFileError, match=re.escape(problem)):
        load_flex_request(path, MARKET, revision=1)


def test_an_offer_file_answers_its_request(tmp_path: Path) -> None:
    path = tmp_path / "offer.json"
    path.write_text(
        '{"options": [{"price": 12.5, "isps": [{"start": 69, "duration": 8, "power": -1}]}]}'
    )
    request = flex_request()
    offer = load_offer(path, request)
    assert (offer.period, offer.congestion_point) == (request.period, request.congestion_point)
    assert offer.flex_request_message_id == request.message_id
    assert offer.offer_options[0].price == Decimal("12.5")
    assert offer.currency == "EUR"


def test_an_order_copies_the_option_and_refuses_what_the_agr_would() -> None:
    offer = flex_offer()
    order = order_for(
        offer, option_reference="partial", activation_factor=Decimal("0.5"), order_reference="o"
    )
    assert [tuple(isp) for isp in order.isps] == [tuple(isp) for isp in offer.offer_options[1].isps]
    assert order.price == Decimal("400.00") and order.flex_offer_message_id == offer.message_id
    with pytest.raises(LookupError, match="2 options"):
        order_for(offer, option_reference=None, activation_factor=Decimal(1), order_reference="o")
    with pytest.raises(LookupError, match="below the option's minimum"):
        order_for(
            offer, option_reference="partial", activation_factor=Decimal("0.2"), order_reference="o"
        )


def test_the_market_of_a_dso_is_its_portfolio(tmp_path: Path) -> None:
    portfolio = Path(__file__).parents[2] / "adapter" / "samples" / "portfolio.csv"
    config = parse_config(
        {
            "participant": {
                "domain": "dso.example.com",
                "role": "DSO",
                "signing_key": "dso.key",
                "listen": "127.0.0.1:0",
                "store": "sqlite:dso.sqlite3",
                "versions": ["3.1.0"],
            },
            "flex": {"portfolio": str(portfolio), "isp_duration": "PT5M"},
        },
        tmp_path,
        "dso.toml",
    )
    market = market_of(config)
    assert market.isp_duration.total_seconds() == 300
    assert market.congestion_points and all(
        point.startswith("ea1.") for point in market.congestion_points
    )
