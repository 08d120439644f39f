"""Where the official UFTP XSDs are, for the tests that hold our schemas to them.

The official Shapeshifter schema set is not part of this repository: it comes with the
specification, which a checkout keeps beside the repository (`../shared/uftp/xsd`). Without
it thousands of conformance tests cannot run; they used to skip quietly, so a clone elsewhere
ran a fifth of the suite and nothing said why. Now:

* `UFTP_OFFICIAL_XSD_DIR` names the folder (absolute, or relative to the repository root);
* a test that needs it carries the `official_xsd` mark, and skips with `SKIP_REASON` when the
  folder is absent, which the terminal summary counts on one line (tests/conftest.py);
* with `UFTP_REQUIRE_OFFICIAL_XSD=1` (what `.ci/run` sets) such a test fails instead, so a run
  without the schemas can never pass as complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DIR_VARIABLE = "UFTP_OFFICIAL_XSD_DIR"
REQUIRE_VARIABLE = "UFTP_REQUIRE_OFFICIAL_XSD"
REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_DIR = "../shared/uftp/xsd"
#: Protocol Version -> the folder of the official set that defines it.
VERSION_DIRS = {"3.0.0": "3.0.0", "3.1.0": "3.1.0", "4.0.0": "draft"}
#: The files the tests read, in every version folder: the CRO entry file and every file that
#: declares messages.
FILES = (
    "UFTP-cro.xsd",
    "UFTP-common.xsd",
    "UFTP-agr-cro.xsd",
    "UFTP-cro-dso.xsd",
    "UFTP-agr-dso.xsd",
    "UFTP-metering.xsd",
)

#: Marks a test that reads the official schemas.
needs_official_xsd = pytest.mark.official_xsd
#: The start of every skip reason given for it; the summary counts skips by it.
SKIP_REASON = "official UFTP XSDs absent"


def directory() -> Path:
    """The folder `UFTP_OFFICIAL_XSD_DIR` names, or the default beside the repository."""
    path = Path(os.environ.get(DIR_VARIABLE) or DEFAULT_DIR).expanduser()
    return path if path.is_absolute() else (REPOSITORY / path).resolve()


def missing() -> list[str]:
    """The expected files the folder lacks (relative to it); empty when it is complete."""
    root = directory()
    return [
        f"{folder}/{name}"
        for folder in VERSION_DIRS.values()
        for name in FILES
        if not (root / folder / name).is_file()
    ]


def available() -> bool:
    return not missing()


def required() -> bool:
    """Whether a test that needs the schemas must fail rather than skip without them."""
    return os.environ.get(REQUIRE_VARIABLE, "").strip() not in ("", "0")


def expected_layout() -> str:
    """What the folder must hold, in words."""
    return f"{'/, '.join(VERSION_DIRS.values())}/ each with {', '.join(FILES)}"


def problem() -> str:
    """Why the schemas are unusable, for skip and failure messages."""
    lacking = missing()
    root = directory()
    what = "no such folder" if not root.is_dir() else f"lacks {', '.join(lacking[:3])}"
    if len(lacking) > 3 and root.is_dir():
        what += f" and {len(lacking) - 3} more"
    return f"{SKIP_REASON}: {root} ({what})"


def how_to_fix() -> str:
    return (
        f"set {DIR_VARIABLE} to the specification's xsd/ folder ({expected_layout()}; "
        f"default {DEFAULT_DIR}, relative to the repository root)"
    )
