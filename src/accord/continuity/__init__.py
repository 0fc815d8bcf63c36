"""What people use a cross-device layer for every day, one package each:

- :mod:`accord.continuity.transfer`: resumable file send (``accord send``)
- :mod:`accord.continuity.clipboard`: the universal clipboard (``accord clip``)
- :mod:`accord.continuity.notify`: notifications that follow you (``accord notify``)

and :mod:`accord.continuity.settings`, the per-device settings they share (``accord
settings``). Each package holds its pure core, its node service and its control
methods side by side, as ``apps/`` does.
"""
