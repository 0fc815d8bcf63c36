"""Trust: security levels, PIN pairing. (Sealing lives in accord.wire.seal.)"""

from accord.trust.levels import may_receive, require_may_receive

__all__ = ["may_receive", "require_may_receive"]
