"""Configuration shipped with the package, so that an installed adapter (not only a clone of
its repository) has them: the demo's sample CRO and DSO (`dso.toml`, `cro.toml`, identical to
the repository's `config/`, with their portfolio files) and the template `uftp-adapter init`
fills in for a new participant (`participant.toml.in`). Read them with `importlib.resources`.
"""
