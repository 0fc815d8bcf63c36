"""This device's own things: its identity key, its home on disk, atomic file writes.

Kept import-light on purpose: ``accord.wire`` and ``accord.bus`` need the identity,
and importing it must not pull in anything above them.
"""
