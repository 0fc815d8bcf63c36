"""SPAKE2 over the Ed25519 group in pure Python (docs/protocol.md, "PIN pairing
handshake"). The page names only "python-spake2 0.9"; the constants below are that
library's Ed25519 parameters (logged as a spec gap until the page writes them down):

- group: the prime-order subgroup of edwards25519 (order L), points in the standard
  32-byte Ed25519 encoding; a received point must decode, not be the identity, and
  have order L;
- M, N: fixed points (hex below);
- w = int_be(HKDF-SHA256(ikm = PIN, salt = b"", info = b"SPAKE2 pw", L = 48)) mod L;
- A sends b"A" || (x*G + w*M), B sends b"B" || (y*G + w*N);
- K = x*(Y* - w*N) = y*(X* - w*M);
- key = SHA-256(SHA-256(pw) || SHA-256(idA) || SHA-256(idB) || X* || Y* || K).
"""

from __future__ import annotations

import hashlib
import os

from conformance.crypto import hkdf_salted

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

M_HEX = "15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312"
N_HEX = "f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3"

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k: int, p: Point) -> Point:
    out = IDENTITY
    while k > 0:
        if k & 1:
            out = _add(out, p)
        p = _add(p, p)
        k >>= 1
    return out


def _neg(p: Point) -> Point:
    x, y, z, t = p
    return (-x % P, y, z, -t % P)


def _is_identity(p: Point) -> bool:
    x, y, z, _ = p
    return x % P == 0 and (y - z) % P == 0


def encode(p: Point) -> bytes:
    x, y, z, _ = p
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode(data: bytes) -> Point:
    """A point of order L, or ValueError."""
    if len(data) != 32:
        raise ValueError("a point is 32 bytes")
    n = int.from_bytes(data, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= P:
        raise ValueError("y out of range")
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P != 0:
        x = x * SQRT_M1 % P
        if (v * x * x - u) % P != 0:
            raise ValueError("not on the curve")
    if x == 0 and sign:
        raise ValueError("bad sign of x = 0")
    if x & 1 != sign:
        x = P - x
    point = (x, y, 1, x * y % P)
    if _is_identity(point) or not _is_identity(_mul(L, point)):
        raise ValueError("not a point of the prime-order subgroup")
    return point


_GY = 4 * pow(5, P - 2, P) % P
BASE = decode(((_GY) | (0 << 255)).to_bytes(32, "little"))
M = decode(bytes.fromhex(M_HEX))
N = decode(bytes.fromhex(N_HEX))


def password_scalar(pw: bytes) -> int:
    return int.from_bytes(hkdf_salted(pw, b"", b"SPAKE2 pw", 48), "big") % L


class Side:
    """One side of SPAKE2: ``start()`` gives the 33-byte message, ``finish(theirs)``
    the 32-byte key (ValueError for a bad message)."""

    def __init__(self, side: bytes, pw: bytes, id_a: bytes, id_b: bytes, scalar: int = 0) -> None:
        self.side, self.pw, self.id_a, self.id_b = side, pw, id_a, id_b
        self.w = password_scalar(pw)
        self.x = scalar or int.from_bytes(os.urandom(64), "big") % L
        blind = M if side == b"A" else N
        self.message = side + encode(_add(_mul(self.x, BASE), _mul(self.w, blind)))

    def finish(self, theirs: bytes) -> bytes:
        other = b"B" if self.side == b"A" else b"A"
        if len(theirs) != 33 or theirs[:1] != other:
            raise ValueError("not the other side's 33-byte SPAKE2 message")
        if theirs[1:] == self.message[1:]:
            raise ValueError("reflected message")
        unblind = N if self.side == b"A" else M
        k = _mul(self.x, _add(decode(theirs[1:]), _neg(_mul(self.w, unblind))))
        x_msg, y_msg = (
            (self.message[1:], theirs[1:]) if self.side == b"A" else (theirs[1:], self.message[1:])
        )
        h = hashlib.sha256
        return h(
            h(self.pw).digest()
            + h(self.id_a).digest()
            + h(self.id_b).digest()
            + x_msg
            + y_msg
            + encode(k)
        ).digest()
