/**
 * CRC-32C (Castagnoli), the checksum of WAL records, tuned for the decoder's hot path.
 *
 * `@node-rs/crc32` computes it natively at several GB/s, but every call crosses into native code
 * (and needs a `subarray` view), which costs more than the checksum itself for the short
 * records that make up most WAL. Short ranges are therefore summed here in JavaScript
 * (slicing-by-8 tables); long ones go to the native implementation.
 *
 * @module
 */

import { createRequire } from "node:module";
import { endianness } from "node:os";
import { nativeCrc } from "./native.js";

/** Reflected Castagnoli polynomial. */
const POLY = 0x82f63b78;

function makeTables(): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
}

const T = makeTables();

/** Tideline's own addon (no `subarray` per call), when built. */
const ADDON = nativeCrc();

type NodeRsCrc32c = (data: Uint8Array, initial?: number) => number;
let nodeRs: NodeRsCrc32c | undefined;

/** `@node-rs/crc32`'s crc32c, loaded on first use: only needed without the addon. */
function nativeCrc32c(data: Uint8Array, initial: number): number {
  nodeRs ??= (createRequire(import.meta.url)("@node-rs/crc32") as { crc32c: NodeRsCrc32c }).crc32c;
  return nodeRs(data, initial);
}

/** Below this many bytes the JavaScript loop beats a native call. */
const NATIVE_THRESHOLD = ADDON !== undefined ? 64 : 256;

/** Whether 32-bit words can be read in place (little-endian machine: x86, ARM). */
const LITTLE_ENDIAN = endianness() === "LE";

/** A word view of the last ArrayBuffer summed word-wise (records come from a few big buffers). */
let wordsOf: ArrayBufferLike | undefined;
let words: Int32Array<ArrayBufferLike> = new Int32Array(0);

function wordView(ab: ArrayBufferLike): Int32Array {
  if (ab !== wordsOf) {
    words = new Int32Array(ab, 0, ab.byteLength >>> 2);
    wordsOf = ab;
  }
  return words;
}

/**
 * Slicing-by-8 over 4-byte-aligned memory: two word reads per 8 bytes instead of eight byte
 * reads. `w` views the whole ArrayBuffer; `i` is the word index of `start`.
 */
function crcWords(w: Int32Array, i: number, len: number, c: number): number {
  const t = T;
  for (let n = len >>> 3; n > 0; n--, i += 2) {
    const a = c ^ w[i]!;
    const b = w[i + 1]!;
    c =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + (b & 0xff)]! ^
      t[512 + ((b >>> 8) & 0xff)]! ^
      t[256 + ((b >>> 16) & 0xff)]! ^
      t[b >>> 24]!;
  }
  if (len & 4) {
    const a = c ^ w[i]!;
    c =
      t[768 + (a & 0xff)]! ^
      t[512 + ((a >>> 8) & 0xff)]! ^
      t[256 + ((a >>> 16) & 0xff)]! ^
      t[a >>> 24]!;
  }
  return c;
}

function crcBytes(buf: Uint8Array, i: number, end: number, c: number): number {
  const t = T;
  for (; i + 8 <= end; i += 8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + buf[i + 4]!]! ^
      t[512 + buf[i + 5]!]! ^
      t[256 + buf[i + 6]!]! ^
      t[buf[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/**
 * A WAL record's CRC-32C as PostgreSQL computes it (`xl_crc`): over the bytes after the
 * 24-byte header (`buf[offset + 24, offset + totLen)`), then over the header's first 20 bytes
 * (everything before `xl_crc`). Same result as two chained {@link crc32cRange} calls, faster
 * for the short records that make up most WAL.
 *
 * @example
 * ```ts
 * recordCrc32c(buf, off, buf.readUInt32LE(off)) === buf.readUInt32LE(off + 20); // a valid record
 * ```
 */
export function recordCrc32c(buf: Uint8Array, offset: number, totLen: number): number {
  if (totLen - 24 >= NATIVE_THRESHOLD) return recordCrc32cIn(buf, undefined, offset, totLen);
  const at = buf.byteOffset + offset;
  if (LITTLE_ENDIAN && (at & 3) === 0) {
    return recordCrc32cIn(buf, wordView(buf.buffer), at, totLen, offset - at);
  }
  return recordCrc32cIn(buf, undefined, offset, totLen);
}

/**
 * A 32-bit word view of `buf` for {@link recordCrc32cIn}, or `undefined` when its memory
 * cannot be read word-wise (not 4-byte aligned, or a big-endian machine).
 *
 * @example
 * ```ts
 * const words = crcWordView(chunk); // once per chunk
 * ```
 */
export function crcWordView(buf: Uint8Array): Int32Array | undefined {
  if (!LITTLE_ENDIAN || (buf.byteOffset & 3) !== 0) return undefined;
  return new Int32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
}

/**
 * {@link recordCrc32c} for a record at byte `offset` of `words` (a {@link crcWordView} of
 * `buf`, made once per buffer), where `buf[offset - shift]` is that byte (`shift` is 0 when
 * `words` views `buf` itself).
 *
 * @example
 * ```ts
 * recordCrc32cIn(chunk, words, off, totLen) === recordCrc32c(chunk, off, totLen); // true
 * ```
 */
export function recordCrc32cIn(
  buf: Uint8Array,
  words: Int32Array | undefined,
  offset: number,
  totLen: number,
  shift = 0,
): number {
  const bodyLen = totLen - 24;
  const o = offset + shift; // in buf
  if (bodyLen >= NATIVE_THRESHOLD) {
    if (ADDON !== undefined) {
      return ADDON.crc32c(buf, o, o + 20, ADDON.crc32c(buf, o + 24, o + totLen, 0));
    }
    return crc32cRange(buf, o, o + 20, crc32cRange(buf, o + 24, o + totLen));
  }
  if (words !== undefined && (offset & 3) === 0) {
    const i = offset >>> 2;
    const whole = bodyLen & ~3;
    let c = crcWords(words, i + 6, whole, -1);
    if (whole !== bodyLen) c = crcBytes(buf, o + 24 + whole, o + totLen, c);
    return ~crcWords(words, i, 20, c) >>> 0;
  }
  return ~crcBytes(buf, o, o + 20, crcBytes(buf, o + 24, o + totLen, -1)) >>> 0;
}

/**
 * CRC-32C of `buf[start, end)`, continuing from `crc` (a previous result; 0 to start), with the
 * same conventions as `@node-rs/crc32`'s `crc32c(data, initial)`.
 *
 * @example
 * ```ts
 * crc32cRange(Buffer.from("123456789"), 0, 9); // 0xE3069283
 * // Chaining: crc32cRange(b, 5, 9, crc32cRange(b, 0, 5)) === crc32cRange(b, 0, 9)
 * ```
 */
export function crc32cRange(buf: Uint8Array, start: number, end: number, crc = 0): number {
  if (end - start >= NATIVE_THRESHOLD) {
    if (ADDON !== undefined) return ADDON.crc32c(buf, start, end, crc);
    return nativeCrc32c(buf.subarray(start, end), crc);
  }
  return ~crcBytes(buf, start, end, ~crc) >>> 0;
}

/**
 * CRC-32C of all of `data`, continuing from `crc` (0 to start): natively (the addon, else
 * `@node-rs/crc32`) for all but short inputs. For layer-file chunks and tables.
 *
 * @example
 * ```ts
 * crc32c(Buffer.from("123456789")); // 0xE3069283
 * crc32c(b2, crc32c(b1)) === crc32c(Buffer.concat([b1, b2])); // true
 * ```
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  return crc32cRange(data, 0, data.length, crc);
}
