"""The official Shapeshifter XSDs, as one schema per Version, for tests that compare with them.

The official set has an entry file per role (UFTP-agr.xsd, UFTP-cro.xsd, UFTP-dso.xsd), each
including the message sets that role exchanges; no one file holds them all. The schema here
includes every file that declares messages, so that it knows every message type our runtime
schemas do.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

from tests import official_xsd

#: Where the official schemas are: UFTP_OFFICIAL_XSD_DIR (tests/official_xsd.py).
OFFICIAL_XSD_DIR = official_xsd.directory()
#: Version -> its directory under OFFICIAL_XSD_DIR (the draft is served as 4.0.0).
OFFICIAL_SUBDIR = official_xsd.VERSION_DIRS
#: The files that declare messages (UFTP-agr-dso.xsd includes UFTP-metering.xsd in turn).
OFFICIAL_FILES = frozenset(
    {
        "UFTP-common.xsd",
        "UFTP-agr-cro.xsd",
        "UFTP-cro-dso.xsd",
        "UFTP-agr-dso.xsd",
        "UFTP-metering.xsd",
    }
)


def official_dir(version: str) -> Path:
    return OFFICIAL_XSD_DIR / OFFICIAL_SUBDIR[version]


@functools.cache
def official_schema(version: str) -> etree.XMLSchema:
    """The official files of `version` together, as one schema."""
    includes = "".join(f'<xs:include schemaLocation="{name}"/>' for name in sorted(OFFICIAL_FILES))
    wrapper = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{includes}</xs:schema>'
    base = f"{official_dir(version).as_uri()}/"
    return etree.XMLSchema(etree.fromstring(wrapper, base_url=base))
