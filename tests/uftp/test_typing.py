"""A request is typed by its response: what a type checker concludes from
`await participant.request(update, ...)`, checked by running mypy on code that uses it.

The runtime half (the participant hands a request only a response of the type it names) is
tests/test_participant.py::test_only_the_addressed_peer_can_answer_a_request; this is the
half only a type checker can see. Each snippet says what it expects; the wrong ones must
fail, or the right ones would prove nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extras")

ROOT = Path(__file__).resolve().parents[2]

#: Lines mypy must accept: every way the adapter offers to await a response.
RIGHT = """
from datetime import date
from typing import assert_type

from adapter import (
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    HandlerContext,
    Participant,
    Sender,
    TestMessage,
    TestMessageResponse,
    publish,
)
from adapter.uftp.messages import FlexRequest, FlexRequestResponse, Metering, MeteringResponse


async def right(
    p: Participant, ctx: HandlerContext, s: Sender, update: DSOPortfolioUpdate
) -> None:
    assert_type(await p.request(update, to="cro.test"), DSOPortfolioUpdateResponse)
    query = DSOPortfolioQuery(time_zone="UTC", period=date(2025, 1, 1), entity_address="x")
    assert_type(await p.request(query, to="cro.test"), DSOPortfolioQueryResponse)
    assert_type(await p.request(TestMessage(), to="cro.test"), TestMessageResponse)
    assert_type(await ctx.request(update, to="cro.test"), DSOPortfolioUpdateResponse)
    assert_type(await s.request(update, to="cro.test"), DSOPortfolioUpdateResponse)
    assert_type(await publish(p, update, to="cro.test"), DSOPortfolioUpdateResponse)
    assert_type(await p.send(update, to="cro.test"), DSOPortfolioUpdate)


async def flex(p: Participant, request: FlexRequest, metering: Metering) -> None:
    assert_type(await p.request(request, to="agr.test"), FlexRequestResponse)
    assert_type(await p.request(metering, to="dso.test"), MeteringResponse)
"""

#: Lines mypy must refuse, each marked with the error code it must give.
WRONG = """
from typing import assert_type

from adapter import (
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    HandlerContext,
    Participant,
)


async def wrong(p: Participant, ctx: HandlerContext, update: DSOPortfolioUpdate) -> None:
    assert_type(await p.request(update, to="x"), DSOPortfolioQueryResponse)  # E: assert-type
    assert_type(await ctx.request(update, to="x"), DSOPortfolioQueryResponse)  # E: assert-type
    await p.request(DSOPortfolioUpdateResponse(), to="dso.test")  # E: arg-type
    response: DSOPortfolioQueryResponse = await p.request(update, to="cro.test")  # E: arg-type
"""


def mypy(tmp_path: Path, sources: dict[str, str]) -> list[tuple[str, int, str]]:
    """(file, line, error code) of each error mypy reports in `sources`: strict, and silent
    about the modules they import (their own check is `mypy adapter`)."""
    for name, text in sources.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(tmp_path / "cache"),
            *(str(tmp_path / name) for name in sources),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    errors = re.findall(r"^(.*?\.py):(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.M)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    assert errors or result.returncode == 0, result.stdout
    return [(Path(path).name, int(line), code) for path, line, code in errors]


def expected_errors(name: str, text: str) -> list[tuple[str, int, str]]:
    lines = textwrap.dedent(text).splitlines()
    return [
        (name, number, match.group(1))
        for number, line in enumerate(lines, start=1)
        if (match := re.search(r"# E: ([a-z-]+)$", line))
    ]


def test_request_is_typed_by_the_response_its_request_names(tmp_path: Path) -> None:
    errors = mypy(tmp_path, {"right.py": RIGHT, "wrong.py": WRONG})
    assert [e for e in errors if e[0] == "right.py"] == []
    assert expected_errors("wrong.py", WRONG)  # the snippet still marks what must fail
    assert [e for e in errors if e[0] == "wrong.py"] == expected_errors("wrong.py", WRONG)
