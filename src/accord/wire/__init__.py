"""Sans-IO wire format: message structs and their encoding. No sockets here."""

from accord.wire.messages import PROTOCOL_VERSION, Announcement, decode_announcement

__all__ = ["PROTOCOL_VERSION", "Announcement", "decode_announcement"]
