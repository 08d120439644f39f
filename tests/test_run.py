"""The main job: the loopback demo publishes the sample portfolio and shows the register."""

from __future__ import annotations

import io
import shutil
import stat
from pathlib import Path

from adapter.run import EXIT_ACCEPTED, demo
from adapter.testing import free_port

SAMPLES = Path(__file__).parents[1] / "config"


def copy_samples(tmp_path: Path) -> Path:
    """The sample configs and portfolio, moved to free ports (the samples use 8081/8082)."""
    config = tmp_path / "config"
    shutil.copytree(SAMPLES, config)
    ports = {"8081": str(free_port()), "8082": str(free_port())}
    for name in ("dso.toml", "cro.toml"):
        path = config / name
        text = path.read_text()
        for old, new in ports.items():
            text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        path.write_text(text)
    return config


async def test_demo_publishes_the_sample_portfolio_and_shows_the_register(tmp_path: Path) -> None:
    config = copy_samples(tmp_path)
    out = io.StringIO()

    assert await demo(config, out) == EXIT_ACCEPTED

    text = out.getvalue()
    assert "3 congestion points, 6 connections" in text
    assert "DSOPortfolioUpdateResponse Accepted" in text
    assert "DSOPortfolioQueryResponse Accepted" in text
    assert "ean.871685900000000011" in text  # the queried point's connections came back
    assert "3 congestion points of 1 DSO, 6 connections" in text  # the register
    for name in ("dso", "cro"):  # keys generated on first run, private ones unreadable to others
        mode = stat.S_IMODE((tmp_path / "keys" / f"{name}.key").stat().st_mode)
        assert mode == 0o600
    assert (tmp_path / "var" / "cro.sqlite3").exists()


async def test_demo_runs_again_on_the_same_stores(tmp_path: Path) -> None:
    config = copy_samples(tmp_path)
    assert await demo(config, io.StringIO()) == EXIT_ACCEPTED
    out = io.StringIO()
    assert await demo(config, out) == EXIT_ACCEPTED  # same keys, same register: accepted again
    assert "Accepted" in out.getvalue()
