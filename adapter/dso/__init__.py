"""The DSO's side of the contract phase (spec: contract-phase.md, "Publish Congestion Points"):
its portfolio read from a file, published to the CRO, and asked back.

    update = load_portfolio("config/portfolio.csv")
    async with participant_for(load_config("config/dso.toml")) as dso:
        response = await publish(dso, update, to="cro.uftp-demo.test")

`portfolio` reads and checks the file (CSV or JSON) into a DSOPortfolioUpdate; `publish` sends
it and the DSOPortfolioQuery over a running `Participant`.
"""

from adapter.dso.portfolio import (
    DEFAULT_TIME_ZONE,
    PortfolioFileError,
    PortfolioRuleError,
    load_portfolio,
    period_problems,
)
from adapter.dso.publish import publish, query, single_cro

__all__ = [
    "DEFAULT_TIME_ZONE",
    "PortfolioFileError",
    "PortfolioRuleError",
    "load_portfolio",
    "period_problems",
    "publish",
    "query",
    "single_cro",
]
