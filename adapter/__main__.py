"""`python -m adapter`: the same as the `uftp-adapter` console script."""

from adapter.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
