"""uftp-adapter: an async Shapeshifter/UFTP participant for DSOs and CROs."""

__version__ = "0.1.0"
