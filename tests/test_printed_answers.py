"""A peer's words on the operator's terminal: the rejection reasons and addresses a peer wrote
are printed escaped by every command that prints an answer (`send`, `dso publish`,
`dso query`, the flex commands)."""

from __future__ import annotations

import dataclasses

from adapter.dso.publish import describe_publish, describe_query
from adapter.flex.commands import _describe
from adapter.run import describe_response
from adapter.uftp.messages import DSOPortfolioQueryCongestionPoint, Result
from tests.uftp.samples import (
    make_dso_portfolio_query_response,
    make_dso_portfolio_update_response,
)

#: A terminal escape that clears the screen, and a bidi override.
HOSTILE = "bad\x1b[2J\u202eperiod"
SHOWN = "bad\\x1b[2J\\u202eperiod"


def test_rejection_reasons_are_printed_escaped() -> None:
    rejected = make_dso_portfolio_update_response(
        result=Result.REJECTED, rejection_reason=f"{HOSTILE}; second"
    )
    for text in (describe_publish(rejected), describe_response(rejected), _describe(rejected)):
        assert SHOWN in text and "\x1b" not in text and "\u202e" not in text


def test_the_addresses_a_cro_answers_are_printed_escaped() -> None:
    response = make_dso_portfolio_query_response()
    assert response.congestion_point is not None
    point = DSOPortfolioQueryCongestionPoint(
        entity_address=f"ea1.2026-01.test:{HOSTILE}",
        connections=response.congestion_point.connections,
    )
    text = describe_query(dataclasses.replace(response, congestion_point=point))
    assert SHOWN in text and "\x1b" not in text
