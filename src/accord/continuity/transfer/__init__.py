"""Resumable file send: ``accord send PATH... --to DEVICE``.

The sender hashes each file in SHA-256 blocks (:mod:`.blocks`) and offers the list
to the receiver (``files.receive``, a stream of progress); the receiver keeps what
it already holds from an earlier attempt (:mod:`.partial`) and pulls only the
missing blocks from the sender (``outbox.blocks``, a stream with credit). Every
block is checked against its hash before it is written; a file is renamed into the
inbox only when all its blocks are there. Wire format: docs/protocol.md.
"""
