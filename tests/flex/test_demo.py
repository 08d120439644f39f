"""`uftp-adapter demo --flex`: the flex day runs through, every step accepted, and the
settlement confirms the order it ordered."""

from __future__ import annotations

import io
import subprocess
import sys

from adapter.flex.demo import flex_day


async def test_the_flex_day_is_accepted_step_by_step() -> None:
    out = io.StringIO()
    assert await flex_day(out) == 0
    text = out.getvalue()
    for line in (
        "CRO: DSOPortfolioUpdateResponse Accepted",
        "CRO: AGRPortfolioUpdateResponse Accepted",
        "the AGR's connections behind ea1.2026-01.test.uftp-demo:cp-north",
        "AGR: FlexRequestResponse Accepted",
        "DSO: FlexOfferResponse Accepted",
        "AGR: FlexOrderResponse Accepted",
        "from agr.uftp-demo.test: ordered",
        "AGR: FlexSettlementResponse Accepted",
        "order DEMO-1: Accepted",
    ):
        assert line in text, text
    assert "Rejected" not in text


def test_demo_flex_on_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adapter", "demo", "--flex"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "order DEMO-1: Accepted" in result.stdout
