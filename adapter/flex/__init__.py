"""Flexibility trading between DSO and AGR (spec: the flex-*.md pages, message-validation.md).

`state` names what the conversation remembers (requests, offers, orders and where they
stand); `rules` is the pure core: from a message, the state it refers to, the market and the
time, the RejectionReasons of message-validation.md; `handlers` are the DSO's and the AGR's
ready-made handlers, with the store (`adapter.store.flex`) as their edge; `desk` sends a
message after it was recorded, and reads the files the command line takes.

Kept free of imports here: the store's port imports `state`, and `handlers` imports the store.
"""
