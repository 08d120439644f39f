"""The fixtures of tests/directory: two participants configured with DNS only (`sites`)."""

from tests.directory.sites import pair, site

__all__ = ["pair", "site"]
