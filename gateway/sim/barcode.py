"""A wall-clock + camera-index barcode burned into the simulated camera's pixels.

Tests read it back from decoded video (here, with numpy) and from a browser canvas
(``gateway/web/js/barcode.js``, the same algorithm) to measure glass-to-glass
latency and to check that a picture comes from the camera it should.

Layout (all positions are fractions of the frame, so the code survives scaling):

- A grid of 2 rows × 40 cells at the top-left corner. Cell ``c`` of row ``r``
  covers x from ``round(c*W/48)`` to ``round((c+1)*W/48)`` and y from
  ``round(r*H*0.035)`` to ``round((r+1)*H*0.035)``, rounding halves up. The
  strip is thus 5/6 of the width wide and 7 % of the height tall.
- Motion detectors can mask the top 8 % of the picture: while the scene is
  "static" nothing changes below it (the barcode and the sim's ticker to its
  right stay inside) except mild sensor noise.
- Cells are white (luma 235, RGB 255) for 1 and black (luma 16, RGB 0) for 0.
- Cells 0–3 of row 0 are the start pattern 1,0,1,0; cells 0–3 of row 1 are 0,1,0,1.
  They prove the strip is there and give the black and white levels: the decoder
  thresholds every cell at the midpoint of their means.
- Cells 4–39 of row 0 then of row 1 hold 72 bits, most significant first:
  42 bits of milliseconds since the Unix epoch, 14 bits of camera index, and a
  CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of the first 56 bits taken as
  7 bytes big-endian.
- A cell is read as the mean luma of its inner half (25 %–75 % in x and y),
  which keeps compression ringing and scaling blur at the edges out of the vote.

It decodes after H.264 at ordinary quality for frames 320×180 and larger.
"""

from __future__ import annotations

import math

import numpy as np

COLS = 40  # cells per row, start pattern included
ROWS = 2
START = ((1, 0, 1, 0), (0, 1, 0, 1))
CELL_W_FRACTION = 1 / 48  # of the frame width
CELL_H_FRACTION = 0.035  # of the frame height
STRIP_HEIGHT_FRACTION = 0.08  # everything the sim changes when static lies above this
MS_BITS = 42
INDEX_BITS = 14
CRC_BITS = 16
WHITE_Y, BLACK_Y = 235, 16
MIN_CONTRAST = 40  # luma levels between the start pattern's white and black


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _bits(ms: int, index: int) -> list[int]:
    payload = ((ms & ((1 << MS_BITS) - 1)) << INDEX_BITS) | (index & ((1 << INDEX_BITS) - 1))
    word = (payload << CRC_BITS) | crc16(payload.to_bytes(7, "big"))
    n = MS_BITS + INDEX_BITS + CRC_BITS
    return [(word >> (n - 1 - i)) & 1 for i in range(n)]


def _round(v: float) -> int:
    # half up, like JavaScript's Math.round (Python's round() goes half to even)
    return math.floor(v + 0.5)


def cell_edges(width: int, height: int) -> tuple[list[int], list[int]]:
    """Pixel edges of the cells: ``COLS + 1`` x positions and ``ROWS + 1`` y positions."""
    xs = [_round(c * width * CELL_W_FRACTION) for c in range(COLS + 1)]
    ys = [_round(r * height * CELL_H_FRACTION) for r in range(ROWS + 1)]
    return xs, ys


def strip_size(width: int, height: int) -> tuple[int, int]:
    """Width and height in pixels of the barcode grid."""
    xs, ys = cell_edges(width, height)
    return xs[-1], ys[-1]


def cell_values(ms: int, index: int) -> np.ndarray:
    """The ROWS × COLS grid of 0/1 cells for this time and index."""
    data = _bits(ms, index)
    per_row = COLS - len(START[0])
    grid = np.zeros((ROWS, COLS), np.uint8)
    for r in range(ROWS):
        grid[r, : len(START[r])] = START[r]
        grid[r, len(START[r]) :] = data[r * per_row : (r + 1) * per_row]
    return grid


def encode(array: np.ndarray, ms: int, index: int, height: int | None = None) -> None:
    """Burn the barcode into ``array`` in place.

    ``array`` is a luma plane (H×W, uint8; set ``height`` when it is a whole
    I420 buffer of shape (H*3/2)×W, whose chroma the caller keeps neutral under
    the strip) or an RGB/RGBA image (H×W×3|4, uint8).
    """
    h = height if height is not None else array.shape[0]
    w = array.shape[1]
    xs, ys = cell_edges(w, h)
    grid = cell_values(ms, index)
    # Expand cells to pixels with index maps: one fancy-index instead of 80 slices.
    col_of = np.repeat(np.arange(COLS), np.diff(xs))
    row_of = np.repeat(np.arange(ROWS), np.diff(ys))
    pix = grid[row_of][:, col_of]
    if array.ndim == 2:
        array[: ys[-1], : xs[-1]] = np.where(pix == 1, WHITE_Y, BLACK_Y).astype(np.uint8)
    else:
        rgb = np.where(pix == 1, 255, 0).astype(np.uint8)
        for ch in range(3):
            array[: ys[-1], : xs[-1], ch] = rgb
        if array.shape[2] == 4:
            array[: ys[-1], : xs[-1], 3] = 255


def _luma(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] >= 3:
        # Only the strip is converted: cheap even for big frames.
        rgb = array[..., :3].astype(np.float32)
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    raise ValueError(f"expected an H×W luma or H×W×3/4 RGB array, got shape {array.shape}")


def decode(array: np.ndarray, height: int | None = None) -> tuple[int, int] | None:
    """``(ms, index)`` read from a luma plane or RGB(A) image, or None if no valid code.

    ``height`` as in :func:`encode`, for whole I420 buffers.
    """
    if not isinstance(array, np.ndarray) or array.ndim not in (2, 3):
        return None
    h = height if height is not None else array.shape[0]
    w = array.shape[1]
    xs, ys = cell_edges(w, h)
    if min(np.diff(xs)) < 2 or min(np.diff(ys)) < 2:
        return None  # too small to read
    strip = _luma(array[: ys[-1], : xs[-1]])
    means = np.empty((ROWS, COLS), np.float32)
    for r in range(ROWS):
        y0, y1 = ys[r], ys[r + 1]
        iy0, iy1 = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4
        for c in range(COLS):
            x0, x1 = xs[c], xs[c + 1]
            ix0, ix1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
            means[r, c] = strip[iy0 : max(iy1, iy0 + 1), ix0 : max(ix1, ix0 + 1)].mean()
    start = np.array(START, np.uint8)
    nstart = start.shape[1]
    white = means[:, :nstart][start == 1].mean()
    black = means[:, :nstart][start == 0].mean()
    if white - black < MIN_CONTRAST:
        return None
    bits = (means > (white + black) / 2).astype(np.uint8)
    if not np.array_equal(bits[:, :nstart], start):
        return None
    data = bits[:, nstart:].reshape(-1)
    word = 0
    for b in data:
        word = (word << 1) | int(b)
    crc = word & 0xFFFF
    payload = word >> CRC_BITS
    if crc16(payload.to_bytes(7, "big")) != crc:
        return None
    return payload >> INDEX_BITS, payload & ((1 << INDEX_BITS) - 1)
