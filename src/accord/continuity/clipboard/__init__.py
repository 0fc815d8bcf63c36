"""The universal clipboard: ``accord clip copy`` on one device, ``accord clip paste``
on another.

A copy announces a small descriptor (:class:`~.messages.ClipItem`: kind, size,
origin, expiry) to the members that may hold it; the bytes stay on the origin until
someone pastes, and the paste pulls them (``clip.fetch``, a stream). Items labelled
S3 (``--sensitive``) are announced to and fetched by S3-capable members only.
"""
