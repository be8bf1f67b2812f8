/*
 * Reads the simulated camera's barcode (wall-clock ms + camera index) from a
 * canvas ImageData. The same algorithm as gateway/sim/barcode.py, whose
 * docstring documents the layout; keep the two in step.
 *
 *   const r = decodeBarcode(ctx.getImageData(0, 0, w, h)); // {ms, index} | null
 *
 * Works as a classic <script> (sets window.decodeBarcode) and under node
 * (module.exports).
 */
(function (root) {
  "use strict";

  const COLS = 40;
  const ROWS = 2;
  const START = [
    [1, 0, 1, 0],
    [0, 1, 0, 1],
  ];
  const CELL_W_FRACTION = 1 / 48;
  const CELL_H_FRACTION = 0.035;
  const MS_BITS = 42;
  const INDEX_BITS = 14;
  const MIN_CONTRAST = 40;

  function crc16(bytes) {
    let crc = 0xffff;
    for (const byte of bytes) {
      crc ^= byte << 8;
      for (let i = 0; i < 8; i++) {
        crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
      }
    }
    return crc;
  }

  function cellEdges(width, height) {
    const xs = [];
    const ys = [];
    for (let c = 0; c <= COLS; c++) xs.push(Math.floor(c * width * CELL_W_FRACTION + 0.5));
    for (let r = 0; r <= ROWS; r++) ys.push(Math.floor(r * height * CELL_H_FRACTION + 0.5));
    return [xs, ys];
  }

  // Mean luma of the inner half of a cell (edges carry compression ringing).
  function cellMean(img, x0, x1, y0, y1) {
    const ix0 = x0 + Math.floor((x1 - x0) / 4);
    const ix1 = Math.max(x1 - Math.floor((x1 - x0) / 4), ix0 + 1);
    const iy0 = y0 + Math.floor((y1 - y0) / 4);
    const iy1 = Math.max(y1 - Math.floor((y1 - y0) / 4), iy0 + 1);
    const d = img.data;
    let sum = 0;
    let n = 0;
    for (let y = iy0; y < iy1; y++) {
      let p = (y * img.width + ix0) * 4;
      for (let x = ix0; x < ix1; x++, p += 4) {
        sum += d[p] * 0.299 + d[p + 1] * 0.587 + d[p + 2] * 0.114;
        n++;
      }
    }
    return sum / n;
  }

  /**
   * {ms, index} from an RGBA ImageData ({width, height, data}), or null. data may
   * hold only the top rows of the picture (at least the top 8 %), with height
   * still the whole picture's.
   */
  function decodeBarcode(img) {
    if (!img || !img.data || !img.width || !img.height) return null;
    const [xs, ys] = cellEdges(img.width, img.height);
    if (img.data.length < ys[ROWS] * img.width * 4) return null;
    for (let i = 0; i < COLS; i++) if (xs[i + 1] - xs[i] < 2) return null;
    for (let i = 0; i < ROWS; i++) if (ys[i + 1] - ys[i] < 2) return null;
    const means = [];
    for (let r = 0; r < ROWS; r++) {
      const row = [];
      for (let c = 0; c < COLS; c++) row.push(cellMean(img, xs[c], xs[c + 1], ys[r], ys[r + 1]));
      means.push(row);
    }
    let white = 0;
    let black = 0;
    let nw = 0;
    let nb = 0;
    for (let r = 0; r < ROWS; r++) {
      for (let c = 0; c < START[r].length; c++) {
        if (START[r][c]) {
          white += means[r][c];
          nw++;
        } else {
          black += means[r][c];
          nb++;
        }
      }
    }
    white /= nw;
    black /= nb;
    if (white - black < MIN_CONTRAST) return null;
    const threshold = (white + black) / 2;
    const bits = [];
    for (let r = 0; r < ROWS; r++) {
      for (let c = 0; c < COLS; c++) {
        const bit = means[r][c] > threshold ? 1 : 0;
        if (c < START[r].length) {
          if (bit !== START[r][c]) return null;
        } else {
          bits.push(bit);
        }
      }
    }
    // 42 + 14 bits payload then 16 bits CRC; numbers stay exact below 2^53.
    const payloadBytes = [];
    for (let i = 0; i < MS_BITS + INDEX_BITS; i += 8) {
      let b = 0;
      for (let j = 0; j < 8; j++) b = (b << 1) | bits[i + j];
      payloadBytes.push(b);
    }
    let crc = 0;
    for (let i = MS_BITS + INDEX_BITS; i < bits.length; i++) crc = crc * 2 + bits[i];
    if (crc16(payloadBytes) !== crc) return null;
    let ms = 0;
    for (let i = 0; i < MS_BITS; i++) ms = ms * 2 + bits[i];
    let index = 0;
    for (let i = MS_BITS; i < MS_BITS + INDEX_BITS; i++) index = index * 2 + bits[i];
    return { ms: ms, index: index };
  }

  let scratch = null;

  /**
   * Reads the barcode of the frame a <video> shows now (drawn at its natural size
   * on a scratch canvas): {ms, index, latencyMs} or null. latencyMs is glass to
   * glass: Date.now() minus the camera's wall clock when it made the frame (same
   * machine, same clock).
   */
  function decodeVideoBarcode(video) {
    const w = video.videoWidth;
    const h = video.videoHeight;
    if (!w || !h || typeof document === "undefined") return null;
    if (!scratch) scratch = document.createElement("canvas");
    if (scratch.width !== w || scratch.height !== h) {
      scratch.width = w;
      scratch.height = h;
    }
    const ctx = scratch.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, w, h);
    // only the strip at the top is needed: read just that band
    const band = Math.min(h, Math.ceil(h * 0.08) + 1);
    const img = ctx.getImageData(0, 0, w, band);
    const r = decodeBarcode({ width: w, height: h, data: img.data });
    return r ? { ms: r.ms, index: r.index, latencyMs: Date.now() - r.ms } : null;
  }

  const api = { decodeBarcode: decodeBarcode, decodeVideoBarcode: decodeVideoBarcode, crc16: crc16 };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  root.decodeBarcode = decodeBarcode;
  root.decodeVideoBarcode = decodeVideoBarcode;
})(typeof window !== "undefined" ? window : globalThis);
