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

import { crc32c as nativeCrc32c } from "@node-rs/crc32";

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

/** Below this many bytes the JavaScript loop beats a native call. */
const NATIVE_THRESHOLD = 256;

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
  if (end - start >= NATIVE_THRESHOLD) return nativeCrc32c(buf.subarray(start, end), crc);
  let c = ~crc;
  let i = start;
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
  return ~c >>> 0;
}
