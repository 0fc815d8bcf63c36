"""An independent Accord conformance client, written from docs/protocol.md alone.

It imports nothing from ``accord``: only Zenoh, msgspec, cryptography (and, until
the spec gives SPAKE2's constants, nothing else). Run it against a node's Zenoh
endpoint: ``python -m conformance --connect tcp/127.0.0.1:PORT --pin PIN``.
"""
