"""The JPEG test card: Pillow decodes it at any size, the stream is exactly as long as
announced and cut into exact chunks, a faint grain makes it as big as a real photo, and
200 MP (about 50 MB) streams fast in little memory."""

from __future__ import annotations

import io
import time
import tracemalloc

import pytest
from PIL import Image, ImageChops, ImageStat

from accord.hardware.jpeg import TestPattern, render

# The bars as intended, left to right (EBU 100/0/75/0).
BARS = [
    (255, 255, 255),
    (191, 191, 0),
    (0, 191, 191),
    (0, 191, 0),
    (191, 0, 191),
    (191, 0, 0),
    (0, 0, 191),
    (0, 0, 0),
]
RED = (255, 0, 0)
TOLERANCE = 12


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def near(actual: object, expected: tuple[int, int, int]) -> bool:
    assert isinstance(actual, tuple | list)
    return all(abs(a - e) <= TOLERANCE for a, e in zip(actual, expected, strict=True))


def mean(image: Image.Image, x: int, y: int, radius: int = 4) -> list[float]:
    """The average colour around (x, y): the grain averages out, the card's colour stays."""
    width, height = image.size
    box = (max(0, x - radius), max(0, y - radius), min(width, x + radius), min(height, y + radius))
    return list(ImageStat.Stat(image.crop(box)).mean)


def segments(data: bytes) -> dict[int, bytes]:
    """Marker -> payload of the header segments, up to and including SOS."""
    found: dict[int, bytes] = {}
    i = 2
    while True:
        assert data[i] == 0xFF
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        found[marker] = data[i + 4 : i + 2 + length]
        i += 2 + length
        if marker == 0xDA:
            found[0] = data[i:]  # the entropy-coded data and what follows
            return found


def check_scan(data: bytes, mcu_rows: int) -> None:
    """Every 0xFF in the scan is stuffed or a marker; RST0..7 cycle between rows only."""
    scan = segments(data)[0]
    restarts = []
    i = scan.find(b"\xff")
    while i != -1:
        follower = scan[i + 1]
        assert follower == 0 or 0xD0 <= follower <= 0xD7 or follower == 0xD9, hex(follower)
        if 0xD0 <= follower <= 0xD7:
            restarts.append(follower - 0xD0)
        i = scan.find(b"\xff", i + 2)
    assert restarts == [n % 8 for n in range(mcu_rows - 1)]
    assert scan.endswith(b"\xff\xd9")


def check_card(image: Image.Image) -> None:
    """Bars across the top two thirds, a ramp getting lighter, then the checker strip."""
    width, height = image.size
    for n, colour in enumerate(BARS):
        x = int((n + 0.5) * width / len(BARS))
        assert near(mean(image, x, height // 3), colour), (n, x)
    ramp_y = int(height * 0.76)
    left, right = mean(image, 20, ramp_y), mean(image, width - 20, ramp_y)
    assert left[0] < 30 < 220 < right[0]
    # Small boxes inside the last MCU row, which may be cut short.
    strip = [mean(image, x, height - 4, radius=2) for x in range(8, width, 16)]
    assert any(near(p, (16, 16, 16)) for p in strip)
    assert any(near(p, (235, 235, 235)) for p in strip)


@pytest.mark.parametrize("texture", [True, False])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 13), (640, 480), (1921, 1081)])
def test_decodes_at_small_and_odd_sizes(width: int, height: int, texture: bool) -> None:
    data = render(width, height, texture=texture)
    image = decode(data)
    assert image.format == "JPEG"
    assert image.size == (width, height)
    assert image.mode == "RGB"
    assert near(image.getpixel((0, 0)), BARS[0])
    check_scan(data, -(-height // 16))
    if width >= 640:
        check_card(image)


def test_texture_is_a_faint_grain_on_the_same_card() -> None:
    grainy, flat = decode(render(640, 480)), decode(render(640, 480, texture=False))
    diff = ImageChops.difference(grainy, flat)
    spread = ImageStat.Stat(ImageChops.subtract(grainy, flat, offset=128)).stddev
    # Every pixel stays close to the flat card, yet there is grain everywhere.
    assert max(high for _, high in ImageStat.Stat(diff).extrema) <= TOLERANCE
    assert all(1 < s < 5 for s in spread), spread
    # Grain in every MCU row: the whole image differs, not just a band.
    for y in range(8, 480, 16):
        row = diff.crop((0, y, 640, y + 1))
        assert max(high for _, high in ImageStat.Stat(row).extrema) > 0, y
    # Region averages match the flat card's.
    for x, y in [(40, 160), (200, 160), (600, 160), (320, 370), (100, 440)]:
        assert all(
            abs(a - b) < 3 for a, b in zip(mean(grainy, x, y), mean(flat, x, y), strict=True)
        ), (x, y)


def test_the_grain_costs_about_two_bits_a_pixel() -> None:
    grainy = TestPattern(4000, 3000).total_bytes
    flat = TestPattern(4000, 3000, texture=False).total_bytes
    assert 1.5 <= grainy * 8 / (4000 * 3000) <= 2.5
    assert flat * 8 / (4000 * 3000) < 0.2


def test_frames_differ_by_a_moving_marker() -> None:
    first, second = decode(render(640, 480, frame=0)), decode(render(640, 480, frame=1))
    assert first.tobytes() != second.tobytes()
    y = 470
    # 640 px is 40 MCUs: a 2-MCU marker that moves 1 MCU (16 px) a frame.
    assert near(mean(first, 8, y), RED)
    assert not near(mean(first, 40, y), RED)
    assert near(mean(second, 40, y), RED)
    assert not near(mean(second, 8, y), RED)
    # Everything above the strip is the same card.
    assert first.crop((0, 0, 640, 384)).tobytes() == second.crop((0, 0, 640, 384)).tobytes()


def test_same_arguments_same_bytes() -> None:
    assert render(321, 123, frame=5) == render(321, 123, frame=5)
    assert render(321, 123, texture=False) == render(321, 123, texture=False)
    assert render(321, 123) != render(321, 123, texture=False)


def test_label_goes_in_a_comment() -> None:
    image = decode(render(32, 32, frame=3, label="Nokia X60 rear"))
    assert image.info["comment"] == b"Accord test pattern 32x32 frame 3: Nokia X60 rear"


@pytest.mark.parametrize("texture", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000, 4096, 256 * 1024])
def test_chunks_are_exact_and_add_up_to_the_file(chunk_size: int, texture: bool) -> None:
    pattern = TestPattern(1921, 1081, frame=2, texture=texture)
    pieces = list(pattern.chunks(chunk_size))
    assert b"".join(pieces) == render(1921, 1081, frame=2, texture=texture)
    assert pattern.total_bytes == sum(len(p) for p in pieces)
    assert all(len(p) == chunk_size for p in pieces[:-1])
    assert 1 <= len(pieces[-1]) <= chunk_size


def test_a_file_that_fits_one_chunk() -> None:
    pieces = list(TestPattern(16, 16).chunks())
    assert len(pieces) == 1
    assert len(pieces[0]) == TestPattern(16, 16).total_bytes


def test_byte_stuffing_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flat card's own colours never code a 0xFF; these greys do (found by search).
    greys = [(4, 4, 4), (0, 0, 0), (254, 254, 254)]
    monkeypatch.setattr(
        TestPattern, "_colours", lambda self, band: [greys[x % 3] for x in range(self._mcus_x)]
    )
    data = render(96, 48, texture=False)
    assert b"\xff\x00" in segments(data)[0]
    check_scan(data, 3)
    image = decode(data)
    for n in range(6):
        assert near(image.getpixel((16 * n + 8, 24)), greys[n % 3])


def test_the_grain_codes_stuffed_bytes_that_decode() -> None:
    data = render(640, 480)
    assert b"\xff\x00" in segments(data)[0]
    check_scan(data, 30)
    check_card(decode(data))


@pytest.mark.parametrize(
    ("width", "height"), [(0, 10), (10, 0), (65536, 10), (10, 65536), (-5, 10), (True, 10)]
)
def test_sizes_outside_the_jpeg_range_are_refused(width: int, height: int) -> None:
    with pytest.raises(ValueError, match=r"must be a whole number of pixels in 1\.\.65535"):
        TestPattern(width, height)


def test_bad_chunk_size_and_label_are_refused() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        next(TestPattern(8, 8).chunks(0))
    with pytest.raises(ValueError, match="label is too long"):
        TestPattern(8, 8, label="x" * 70_000)


def test_largest_sides_are_accepted() -> None:
    data = render(65535, 1)
    assert TestPattern(65535, 1).total_bytes == len(data)
    assert TestPattern(1, 65535).total_bytes == len(render(1, 65535))
    assert segments(data)[0xC0][1:5] == b"\x00\x01\xff\xff"
    # libjpeg (and so Pillow) stops at 65500 pixels a side.
    assert decode(render(65500, 1)).size == (65500, 1)


def test_4000_by_3000_decodes_with_restarts() -> None:
    data = render(4000, 3000, frame=7)
    assert 2_250_000 <= len(data) <= 3_750_000  # 12 MP at 1.5..2.5 bits a pixel
    check_scan(data, 188)
    image = decode(data)
    assert image.size == (4000, 3000)
    check_card(image)
    # The marker sits 7 steps of 7 MCUs (112 px) along: the strip's last rows decode right.
    assert near(mean(image, 7 * 7 * 16 + 8, 2990), RED)


def test_200_megapixel_sizes_are_realistic_and_cheap_to_know() -> None:
    started = time.process_time()
    grainy = TestPattern(16328, 12246).total_bytes
    flat = TestPattern(16328, 12246, texture=False).total_bytes
    assert time.process_time() - started < 1  # a few distinct rows are encoded, not the file
    assert 25_000_000 < grainy < 80_000_000  # a real 200 MP photo is 30..60 MB
    assert flat < 5_000_000


@pytest.mark.parametrize("texture", [True, False])
def test_200_megapixels_stream_fast_in_little_memory(texture: bool) -> None:
    pattern = TestPattern(16328, 12246, label="Nokia X60 200 MP", texture=texture)
    tracemalloc.start()
    try:
        started = time.process_time()
        total = 0
        first = last = b""
        for chunk in pattern.chunks():
            if not first:
                first = chunk
            last = chunk
            total += len(chunk)
        elapsed = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == pattern.total_bytes
    assert first.startswith(b"\xff\xd8")
    assert last.endswith(b"\xff\xd9")
    frame_header = segments(first)[0xC0]
    assert frame_header[1:5] == (12246).to_bytes(2, "big") + (16328).to_bytes(2, "big")
    # About 50 MB with grain: bounded by copying bytes (tens of milliseconds), with room.
    assert elapsed < 1.5
    assert peak < 16 * 1024 * 1024
