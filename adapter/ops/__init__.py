"""Running the participant as a service: what its operators see and steer.

`inspect` lists and steers the messages in a store (`outbox`, `inbox` and `status` commands),
`metrics` and `http` expose Prometheus metrics, `/health` and `/ready` on a listen address of
their own, `logs` writes log lines for a terminal or a log shipper, `retention` prunes old
messages, `backup` copies a SQLite store while it runs, and `init` writes a new participant's
configuration and key.
"""
