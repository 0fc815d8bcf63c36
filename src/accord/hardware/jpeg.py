"""A streaming JPEG test card of any size, for simulated cameras.

The card is a baseline JFIF JPEG (SOF0, YCbCr 4:2:0, the Annex K Huffman tables) of 16x16
MCUs of one colour each. By default every luma block also carries a fine film grain: a few
dozen small AC coefficients from a fixed seeded table (a handful of variants, cycling along
the row), quantised with quality-95 tables as a phone camera would. That costs about two
bits a pixel, so a 200 MP card is about 50 MB, as a real photo would be. With
``texture=False`` the blocks are flat (a DC value and an end-of-block code, a few bits each,
with the Annex K quantisation tables) and 200 MP is about 3 MB.

The restart interval is one MCU row, so each row is byte-aligned and starts from zero DC
predictors: rows that look alike encode to the same bytes. Each distinct row is encoded once
and then repeated, so even 200 MP streams as fast as its bytes can be copied, in memory
proportional to the width, and its exact length is known before the first byte is sent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

__all__ = ["DEFAULT_CHUNK_SIZE", "MAX_SIDE", "TestPattern", "render"]

MAX_SIDE = 65535
"""Largest width or height a JPEG frame header can carry (libjpeg decodes up to 65500)."""

DEFAULT_CHUNK_SIZE = 256 * 1024

MCU_PIXELS = 16
"""4:2:0 sampling: one MCU is 16x16 pixels (four luma blocks, one Cb, one Cr)."""

BAR_COUNT = 8

RGB = tuple[int, int, int]

# EBU 100/0/75/0 colour bars: full white, 75% colours, black.
BARS: tuple[RGB, ...] = (
    (255, 255, 255),
    (191, 191, 0),
    (0, 191, 191),
    (0, 191, 0),
    (191, 0, 191),
    (191, 0, 0),
    (0, 0, 191),
    (0, 0, 0),
)
CHECKER_DARK: RGB = (16, 16, 16)
CHECKER_LIGHT: RGB = (235, 235, 235)
MARKER: RGB = (255, 0, 0)

Quant = tuple[tuple[int, ...], ...]

# Annex K.1 and K.2 quantisation tables, row by row (IJG quality 50). The flat card uses them:
# only the DC entries matter for a DC-only image, but the whole tables are sent as usual.
_LUMA_QUANT: Quant = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_QUANT: Quant = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)

# Annex K.3 to K.6 Huffman tables: (code counts by length 1..16, symbols).
_DC_SYMBOLS = bytes(range(12))
_LUMA_DC = (bytes((0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)), _DC_SYMBOLS)
_CHROMA_DC = (bytes((0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0)), _DC_SYMBOLS)
_LUMA_AC = (
    bytes((0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D)),
    bytes.fromhex(
        "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
        "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
        "535455565758595a636465666768696a737475767778797a838485868788898a"
        "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6"
        "c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
    ),
)
_CHROMA_AC = (
    bytes((0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77)),
    bytes.fromhex(
        "000102031104052131061241510761711322328108144291a1b1c109233352f0"
        "156272d10a162434e125f11718191a262728292a35363738393a434445464748"
        "494a535455565758595a636465666768696a737475767778797a828384858687"
        "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
        "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"
    ),
)


def _scaled(table: Quant, quality: int) -> Quant:
    """An Annex K table scaled to an IJG quality of 50..100, as libjpeg's ``-quality`` does."""
    scale = 200 - 2 * quality
    return tuple(tuple(min(255, max(1, (q * scale + 50) // 100)) for q in row) for row in table)


GRAIN_QUALITY = 95
"""The textured card is quantised like a phone's fine-quality JPEG."""

_FLAT_QUANT = (_LUMA_QUANT, _CHROMA_QUANT)
_GRAIN_QUANT = (_scaled(_LUMA_QUANT, GRAIN_QUALITY), _scaled(_CHROMA_QUANT, GRAIN_QUALITY))

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_MAX_SEGMENT = 65535 - 2  # a segment's length field counts itself
_COMMENT_PREFIX = "Accord test pattern"


def _huffman_codes(table: tuple[bytes, bytes]) -> dict[int, str]:
    """Symbol -> code as a bit string, built canonically as in Annex C."""
    counts, symbols = table
    codes: dict[int, str] = {}
    code = 0
    index = 0
    for length, count in enumerate(counts, start=1):
        for _ in range(count):
            codes[symbols[index]] = format(code, f"0{length}b")
            code += 1
            index += 1
        code <<= 1
    return codes


_LUMA_DC_CODES = _huffman_codes(_LUMA_DC)
_CHROMA_DC_CODES = _huffman_codes(_CHROMA_DC)
_LUMA_AC_CODES = _huffman_codes(_LUMA_AC)
_LUMA_EOB = _LUMA_AC_CODES[0x00]
_LUMA_ZRL = _LUMA_AC_CODES[0xF0]  # sixteen zero coefficients
_CHROMA_EOB = _huffman_codes(_CHROMA_AC)[0x00]

# (row, column) of the 64 coefficients in zig-zag order.
_ZIGZAG = tuple(
    sorted(
        ((r, c) for r in range(8) for c in range(8)),
        key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else rc[1]),
    )
)


def _zigzag(rows: Quant) -> bytes:
    """The 8x8 table in zig-zag order, as DQT carries it."""
    return bytes(rows[r][c] for r, c in _ZIGZAG)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _magnitude_bits(value: int) -> tuple[int, str]:
    """A coefficient's size category and its extra bits (negatives as one's complement)."""
    size = abs(value).bit_length()
    if size == 0:
        return 0, ""
    return size, format(value if value > 0 else value + (1 << size) - 1, f"0{size}b")


def _dc_bits(diff: int, codes: dict[int, str]) -> str:
    """Huffman code of the diff's size category, then its bits."""
    size, extra = _magnitude_bits(diff)
    return codes[size] + extra


def _ac_bits(levels: Sequence[int]) -> str:
    """Huffman-coded AC coefficients 1..63 (zig-zag order) of a luma block (F.1.2.2)."""
    bits: list[str] = []
    run = 0
    for level in levels:
        if not level:
            run += 1
            continue
        while run > 15:  # ZRL only ever comes before a nonzero coefficient
            bits.append(_LUMA_ZRL)
            run -= 16
        size, extra = _magnitude_bits(level)
        bits.append(_LUMA_AC_CODES[run << 4 | size] + extra)
        run = 0
    if run:  # no end-of-block when the last coefficient is nonzero
        bits.append(_LUMA_EOB)
    return "".join(bits)


GRAIN_VARIANTS = 7
"""Distinct grain blocks, cycling along each row (prime, so MCUs of a row rarely repeat)."""

_GRAIN_ROW_PHASES = 2
"""MCU rows alternate between this many offsets into the cycle, so the grain tiles less."""

_GRAIN_SIGMA = 2.5
"""Spread of each AC coefficient before quantisation, in pixel levels: fine, faint grain."""


def _grain_levels(variant: int) -> list[int]:
    """Quantised AC coefficients (zig-zag 1..63) of a grain block: seeded white noise.

    Only ``random()`` is used, whose sequence Python keeps stable for an integer seed, and
    plain arithmetic on it, so the table is the same on every machine and version.
    """
    rng = random.Random(0xACC0 + variant)  # noqa: S311 - a texture, not a secret
    quant = _GRAIN_QUANT[0]
    levels = []
    for r, c in _ZIGZAG[1:]:
        # Irwin-Hall: three uniforms make a bell curve of unit spread, no libm involved.
        noise = (rng.random() + rng.random() + rng.random() - 1.5) * 2
        levels.append(round(_GRAIN_SIGMA * noise / quant[r][c]))
    return levels


_GRAIN_BITS = tuple(_ac_bits(_grain_levels(v)) for v in range(GRAIN_VARIANTS))


def _dc_levels(rgb: RGB, quant: tuple[Quant, Quant]) -> tuple[int, int, int]:
    """Quantised DC coefficients (Y, Cb, Cr) of a flat block of this colour (JFIF YCbCr)."""
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    luma, chroma = quant[0][0][0], quant[1][0][0]
    # A flat block of level v has DC coefficient 8 * (v - 128).
    return (
        round(8 * (y - 128) / luma),
        round(8 * (cb - 128) / chroma),
        round(8 * (cr - 128) / chroma),
    )


def _encode_row(
    colours: Sequence[RGB], quant: tuple[Quant, Quant], textures: Sequence[str], offset: int
) -> bytes:
    """Entropy-coded bytes of one MCU row (one restart interval), padded and stuffed.

    ``textures`` are the AC bits (through end of block) of the luma blocks, taken in turn
    from ``offset`` on; chroma blocks are flat.
    """
    bits: list[str] = []
    pred_y = pred_cb = pred_cr = 0  # restart: predictors start from zero
    # The four luma blocks of an MCU share its DC: after the first, diff category 0.
    repeat = [_LUMA_DC_CODES[0] + texture for texture in textures]
    count = len(textures)
    block = offset
    for rgb in colours:
        y, cb, cr = _dc_levels(rgb, quant)
        bits.append(_dc_bits(y - pred_y, _LUMA_DC_CODES) + textures[block % count])
        bits.append(repeat[(block + 1) % count])
        bits.append(repeat[(block + 2) % count])
        bits.append(repeat[(block + 3) % count])
        bits.append(_dc_bits(cb - pred_cb, _CHROMA_DC_CODES) + _CHROMA_EOB)
        bits.append(_dc_bits(cr - pred_cr, _CHROMA_DC_CODES) + _CHROMA_EOB)
        pred_y, pred_cb, pred_cr = y, cb, cr
        block += 4
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad to a byte with 1-bits (F.1.2.3)
    data = int(stream, 2).to_bytes(len(stream) // 8, "big")
    return data.replace(b"\xff", b"\xff\x00")  # byte stuffing: 0xFF is a marker prefix


def _check_side(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise ValueError(f"{name} must be a whole number of pixels in 1..{MAX_SIDE}, got {value!r}")


class TestPattern:
    """A test card of ``width`` x ``height`` pixels, streamed as a JPEG file.

    Colour bars fill the top two thirds, a grey ramp and a checker strip the rest; a red
    marker in the checker strip moves right with ``frame``, so preview frames differ.
    With ``texture`` (the default) a faint grain makes the file as big as a real photo's,
    about two bits a pixel; without it the card is flat and tiny.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self, width: int, height: int, *, frame: int = 0, label: str = "", texture: bool = True
    ) -> None:
        _check_side("width", width)
        _check_side("height", height)
        self.width = width
        self.height = height
        self.frame = frame
        self.label = label
        self.texture = texture
        self._quant = _GRAIN_QUANT if texture else _FLAT_QUANT
        self._textures = _GRAIN_BITS if texture else (_LUMA_EOB,)
        self._phases = _GRAIN_ROW_PHASES if texture else 1
        self._mcus_x = -(-width // MCU_PIXELS)
        self._mcus_y = -(-height // MCU_PIXELS)
        self._header = self._build_header()
        self._rows: dict[tuple[str, int], bytes] = {}

        # The layout in MCU rows: bars, then ramp, then checker, each at least one row
        # where the image is tall enough.
        self._bars_end = -(-2 * self._mcus_y // 3)
        self._ramp_end = self._bars_end + -(-(self._mcus_y - self._bars_end) // 2)
        self._square = max(1, (self._mcus_y - self._ramp_end) // 2)
        self._marker_width = max(1, self._mcus_x // 16)
        self._marker_x = frame * max(1, self._mcus_x // 32) % self._mcus_x

    def _build_header(self) -> bytes:
        comment = f"{_COMMENT_PREFIX} {self.width}x{self.height} frame {self.frame}"
        if self.label:
            comment += f": {self.label}"
        comment_bytes = comment.encode()
        if len(comment_bytes) > _MAX_SEGMENT:
            raise ValueError(f"label is too long: a JPEG comment holds {_MAX_SEGMENT} bytes")
        huffman = b"".join(
            bytes((table_class << 4 | table_id,)) + counts + symbols
            for table_class, table_id, (counts, symbols) in (
                (0, 0, _LUMA_DC),
                (1, 0, _LUMA_AC),
                (0, 1, _CHROMA_DC),
                (1, 1, _CHROMA_AC),
            )
        )
        return b"".join(
            (
                _SOI,
                _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
                _segment(0xFE, comment_bytes),
                _segment(
                    0xDB, b"\x00" + _zigzag(self._quant[0]) + b"\x01" + _zigzag(self._quant[1])
                ),
                _segment(
                    0xC0,
                    b"\x08"
                    + self.height.to_bytes(2, "big")
                    + self.width.to_bytes(2, "big")
                    + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01",
                ),
                _segment(0xC4, huffman),
                # Restart every MCU row: rows become independent and byte-aligned.
                _segment(0xDD, self._mcus_x.to_bytes(2, "big")),
                _segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"),
            )
        )

    def _band(self, mcu_row: int) -> str:
        """Which kind of row this is; rows of one band encode to the same bytes."""
        if mcu_row < self._bars_end:
            return "bars"
        if mcu_row < self._ramp_end:
            return "ramp"
        return f"checker{(mcu_row - self._ramp_end) // self._square % 2}"

    def _colours(self, band: str) -> list[RGB]:
        n = self._mcus_x
        if band == "bars":
            return [BARS[x * BAR_COUNT // n] for x in range(n)]
        if band == "ramp":
            levels = [round(255 * x / max(n - 1, 1)) for x in range(n)]
            return [(v, v, v) for v in levels]
        parity = int(band[-1])
        colours = [
            CHECKER_LIGHT if (x // self._square + parity) % 2 else CHECKER_DARK for x in range(n)
        ]
        for i in range(self._marker_width):
            colours[(self._marker_x + i) % n] = MARKER
        return colours

    def _row(self, mcu_row: int) -> bytes:
        key = (self._band(mcu_row), mcu_row % self._phases)
        row = self._rows.get(key)
        if row is None:
            band, phase = key
            offset = 3 * phase  # any shift that is not a multiple of four blocks
            row = self._rows[key] = _encode_row(
                self._colours(band), self._quant, self._textures, offset
            )
        return row

    def _pieces(self) -> Iterator[bytes]:
        yield self._header
        last = self._mcus_y - 1
        for mcu_row in range(self._mcus_y):
            yield self._row(mcu_row)
            if mcu_row != last:  # RSTn goes between intervals, never after the last one
                yield bytes((0xFF, 0xD0 + mcu_row % 8))
        yield _EOI

    @property
    def total_bytes(self) -> int:
        """The exact length of the file (encodes only the few distinct rows)."""
        rows = sum(len(self._row(r)) for r in range(self._mcus_y))
        return len(self._header) + rows + 2 * (self._mcus_y - 1) + len(_EOI)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The file in pieces of exactly ``chunk_size`` bytes; the last one may be shorter."""
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of bytes, got {chunk_size!r}")
        pending = bytearray()
        for piece in self._pieces():
            pending += piece
            full = len(pending) - len(pending) % chunk_size
            if not full:
                continue
            # Slice through a view, then drop the sent bytes once: not once per chunk.
            with memoryview(pending) as view:
                for start in range(0, full, chunk_size):
                    yield bytes(view[start : start + chunk_size])
            del pending[:full]
        if pending:
            yield bytes(pending)


def render(
    width: int, height: int, *, frame: int = 0, label: str = "", texture: bool = True
) -> bytes:
    """The whole file at once: for small images."""
    pattern = TestPattern(width, height, frame=frame, label=label, texture=texture)
    return b"".join(pattern.chunks())
