/**
 * Log sequence numbers (LSNs): byte positions in PostgreSQL's write-ahead log.
 *
 * An LSN is an unsigned 64-bit integer, held here as a `bigint`. PostgreSQL prints it as two
 * upper-case hexadecimal halves separated by a slash (`16/B374D848`); `pg_waldump` pads the low
 * half to eight digits (`16/B374D848`, `0/01557C28`).
 *
 * @module
 */

/**
 * An LSN: a `bigint` in `0n ..= 2n ** 64n - 1n`.
 *
 * @example
 * ```ts
 * const lsn: Lsn = parseLsn("16/B374D848");
 * ```
 */
export type Lsn = bigint;

/**
 * The largest LSN, `FFFFFFFF/FFFFFFFF`.
 *
 * @example
 * ```ts
 * formatLsn(MAX_LSN); // "FFFFFFFF/FFFFFFFF"
 * ```
 */
export const MAX_LSN: Lsn = 0xffff_ffff_ffff_ffffn;

/**
 * The invalid LSN, `0/0`: PostgreSQL uses it for "no position" (e.g. the first record's `prev`).
 *
 * @example
 * ```ts
 * record.prev === INVALID_LSN; // true for the very first record of a cluster
 * ```
 */
export const INVALID_LSN: Lsn = 0n;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/**
 * Whether `value` is a bigint in the LSN range.
 *
 * @example
 * ```ts
 * isLsn(5n); // true
 * isLsn(-1n); // false
 * isLsn(5); // false: numbers are not LSNs
 * ```
 */
export function isLsn(value: unknown): value is Lsn {
  return typeof value === "bigint" && value >= 0n && value <= MAX_LSN;
}

/**
 * Checks that `value` is an LSN and returns it.
 *
 * @throws TypeError when `value` is not a bigint; RangeError when it is outside 0..2^64-1.
 * @example
 * ```ts
 * assertLsn(0x1557c28n, "startLsn"); // 22379560n
 * assertLsn(-1n, "startLsn"); // throws RangeError: startLsn must be in 0..2^64-1, got -1
 * ```
 */
export function assertLsn(value: unknown, name = "lsn"): Lsn {
  if (typeof value !== "bigint") {
    throw new TypeError(`${name} must be a bigint LSN, got ${describe(value)}`);
  }
  if (value < 0n || value > MAX_LSN) {
    throw new RangeError(`${name} must be in 0..2^64-1, got ${value}`);
  }
  return value;
}

/**
 * Parses an LSN written as PostgreSQL writes it: `X/X`, each half 1 to 8 hexadecimal digits.
 *
 * @throws TypeError when `text` is not a string; RangeError when it is not in `X/X` form.
 * @example
 * ```ts
 * parseLsn("16/B374D848"); // 0x16B374D848n
 * parseLsn("0/01557C28"); // 0x1557C28n (pg_waldump's padded form is accepted)
 * parseLsn("16-B374D848"); // throws RangeError naming "16-B374D848"
 * ```
 */
export function parseLsn(text: string): Lsn {
  if (typeof text !== "string") {
    throw new TypeError(`an LSN must be a string like "16/B374D848", got ${describe(text)}`);
  }
  const m = LSN_TEXT.exec(text);
  if (m === null) {
    throw new RangeError(
      `invalid LSN ${JSON.stringify(text)}: expected two hexadecimal numbers of 1 to 8 digits separated by "/", like "16/B374D848"`,
    );
  }
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/**
 * Formats an LSN exactly as PostgreSQL prints a `pg_lsn` (`%X/%X`).
 *
 * @throws TypeError/RangeError when `lsn` is not an LSN.
 * @example
 * ```ts
 * formatLsn(0x1557c28n); // "0/1557C28"
 * formatLsn(0x16b374d848n); // "16/B374D848"
 * ```
 */
export function formatLsn(lsn: Lsn): string {
  assertLsn(lsn);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/**
 * Formats an LSN as `pg_waldump` prints record positions (`%X/%08X`).
 *
 * @throws TypeError/RangeError when `lsn` is not an LSN.
 * @example
 * ```ts
 * formatLsnPadded(0x1557c28n); // "0/01557C28"
 * ```
 */
export function formatLsnPadded(lsn: Lsn): string {
  assertLsn(lsn);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn)
    .toString(16)
    .toUpperCase()
    .padStart(8, "0")}`;
}

/**
 * Formats an LSN given as its two 32-bit halves (what the decoder keeps internally) without
 * building a bigint.
 *
 * @example
 * ```ts
 * formatLsnParts(0x16, 0xb374d848); // "16/B374D848"
 * ```
 */
export function formatLsnParts(hi: number, lo: number): string {
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

/**
 * Builds an LSN from its high and low 32-bit halves.
 *
 * @throws RangeError when a half is not an integer in 0..2^32-1.
 * @example
 * ```ts
 * lsnFromParts(0x16, 0xb374d848); // 0x16B374D848n
 * ```
 */
export function lsnFromParts(hi: number, lo: number): Lsn {
  if (!isU32(hi) || !isU32(lo)) {
    throw new RangeError(`LSN halves must be integers in 0..2^32-1, got ${hi} and ${lo}`);
  }
  // Below 2^53 the sum is exact: one bigint instead of four (this runs per record).
  if (hi < 0x20_0000) return BigInt(hi * 0x1_0000_0000 + lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Splits an LSN into its high and low 32-bit halves.
 *
 * @example
 * ```ts
 * lsnParts(0x16b374d848n); // [0x16, 0xB374D848]
 * ```
 */
export function lsnParts(lsn: Lsn): [hi: number, lo: number] {
  assertLsn(lsn);
  return [Number(lsn >> 32n), Number(lsn & 0xffff_ffffn)];
}

/**
 * Adds a byte count to an LSN.
 *
 * @throws RangeError when the result leaves 0..2^64-1.
 * @example
 * ```ts
 * lsnAdd(0xffff_ffffn, 1); // 0x1_0000_0000n, i.e. "1/0"
 * ```
 */
export function lsnAdd(lsn: Lsn, bytes: number | bigint): Lsn {
  assertLsn(lsn);
  const delta = typeof bytes === "bigint" ? bytes : BigInt(checkInteger(bytes, "bytes"));
  const r = lsn + delta;
  if (r < 0n || r > MAX_LSN) {
    throw new RangeError(`${formatLsn(lsn)} + ${delta} is outside the LSN range`);
  }
  return r;
}

/**
 * The number of bytes from `from` to `to` (`to - from`), as a bigint (may be negative).
 *
 * @example
 * ```ts
 * lsnDiff(parseLsn("1/0"), parseLsn("0/FFFFFFF8")); // 8n
 * ```
 */
export function lsnDiff(to: Lsn, from: Lsn): bigint {
  return assertLsn(to, "to") - assertLsn(from, "from");
}

/**
 * Compares two LSNs: negative, zero or positive, for sorting.
 *
 * @example
 * ```ts
 * [3n, 1n, 2n].sort(compareLsn); // [1n, 2n, 3n]
 * ```
 */
export function compareLsn(a: Lsn, b: Lsn): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Rounds an LSN up to the next multiple of 8 (PostgreSQL's MAXALIGN on 64-bit platforms):
 * records start at 8-byte boundaries.
 *
 * @example
 * ```ts
 * lsnAlign(0x1557c2an); // 0x1557C30n
 * ```
 */
export function lsnAlign(lsn: Lsn): Lsn {
  return lsnAdd(lsn, (8n - (assertLsn(lsn) & 7n)) & 7n);
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

function checkInteger(n: number, name: string): number {
  if (!Number.isSafeInteger(n)) throw new RangeError(`${name} must be a safe integer, got ${n}`);
  return n;
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  return `${typeof value} ${String(value)}`;
}

/**
 * The smaller of two LSNs (`Math.min` does not take bigints).
 *
 * @example
 * ```ts
 * import { lsnMin } from "tideline/wal";
 * lsnMin(0x2000000n, 0x1000000n); // 16777216n
 * ```
 */
export function lsnMin(a: Lsn, b: Lsn): Lsn {
  if (a < b) return a;
  return b;
}
