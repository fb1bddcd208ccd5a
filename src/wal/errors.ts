/**
 * Typed errors for invalid WAL. Each names the LSN where decoding stopped (in PostgreSQL's
 * `X/X` form in the message, as a bigint in `lsn`), what was found and what was expected.
 *
 * Misuse of the API (wrong argument types, out-of-range options) throws `TypeError` or
 * `RangeError` instead.
 *
 * @module
 */

import { formatLsn, type Lsn } from "./lsn.js";

/**
 * Why WAL could not be decoded at some LSN.
 *
 * - `bad-magic`: a page header's magic number is not the expected one (or not a known version).
 * - `bad-header`: undefined `xlp_info` bits, a segment's first page without the long header, or
 *   a long header whose system id, segment size or page size disagrees.
 * - `page-address`: a page header's `xlp_pageaddr` is not the page's own LSN (typically a
 *   recycled segment that has not been overwritten yet: the end of valid WAL).
 * - `timeline`: the timeline went backwards from one page to the next.
 * - `crc-mismatch`: the record's CRC32C does not match its bytes.
 * - `bad-length`: an impossible `xl_tot_len` (too small, too large), or headers that do not add
 *   up to it.
 * - `bad-record-offset`: a record would start inside a page header.
 * - `bad-prev-link`: `xl_prev` does not point at the previous record.
 * - `bad-rmgr`: an invalid resource manager id.
 * - `missing-contrecord`: the page after a partial record does not continue it (flag missing or
 *   `xlp_rem_len` disagrees).
 * - `unexpected-contrecord`: a page says it starts with a continuation where a record must start.
 * - `bad-overwrite-contrecord`: an abandoned partial record was not followed by the matching
 *   XLOG_OVERWRITE_CONTRECORD record.
 * - `bad-block-ref`: invalid block reference headers (order, flags, image hole, missing relation).
 * - `truncated`: the input ended (`end()`) in the middle of a record or page header.
 *
 * @example
 * ```ts
 * if (err.code === "crc-mismatch") console.error(`damaged WAL at ${formatLsn(err.lsn)}`);
 * ```
 */
export type WalDecodeErrorCode =
  | "bad-magic"
  | "bad-header"
  | "page-address"
  | "timeline"
  | "crc-mismatch"
  | "bad-length"
  | "bad-record-offset"
  | "bad-prev-link"
  | "bad-rmgr"
  | "missing-contrecord"
  | "unexpected-contrecord"
  | "bad-overwrite-contrecord"
  | "bad-block-ref"
  | "truncated";

/**
 * Extra facts for {@link WalDecodeError}'s constructor.
 *
 * @example
 * ```ts
 * new WalDecodeError("truncated", lsn, "input ended mid-record", { endOfWal: true, recordLsn: lsn });
 * ```
 */
export interface WalDecodeErrorOptions {
  /** The input looks like the normal end of written WAL rather than damage (see `endOfWal`). */
  endOfWal?: boolean;
  /** The start of the record being decoded, when the failure is inside one. */
  recordLsn?: Lsn;
  cause?: unknown;
}

/**
 * Base class of every WAL decoding failure.
 *
 * `endOfWal` is true when the failure is what the end of written WAL normally looks like:
 * zeros where a record or page should start, a page left over from a recycled segment, or input
 * that ended mid-record. `pg_waldump` stops at the first invalid record either way; a caller
 * reading files typically treats `endOfWal` errors as "done" and others as damage.
 *
 * @example
 * ```ts
 * try {
 *   for (const rec of decoder.records()) use(rec);
 * } catch (e) {
 *   if (e instanceof WalDecodeError && e.endOfWal) console.error(`end of WAL: ${e.message}`);
 *   else throw e;
 * }
 * ```
 */
export class WalDecodeError extends Error {
  override name = "WalDecodeError";
  /** Where decoding stopped. */
  readonly lsn: Lsn;
  readonly code: WalDecodeErrorCode;
  readonly endOfWal: boolean;
  /** The record being decoded, when the failure is inside one. */
  readonly recordLsn: Lsn | undefined;

  constructor(
    code: WalDecodeErrorCode,
    lsn: Lsn,
    message: string,
    options: WalDecodeErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.lsn = lsn;
    this.endOfWal = options.endOfWal ?? false;
    this.recordLsn = options.recordLsn;
  }
}

/**
 * A record's stored CRC32C differs from the one computed over its bytes.
 *
 * @example
 * ```ts
 * if (e instanceof WalCrcMismatchError) console.log(e.expected.toString(16), e.actual.toString(16));
 * ```
 */
export class WalCrcMismatchError extends WalDecodeError {
  override name = "WalCrcMismatchError";
  /** The CRC stored in the record header. */
  readonly expected: number;
  /** The CRC computed over the record. */
  readonly actual: number;

  constructor(lsn: Lsn, expected: number, actual: number, options: WalDecodeErrorOptions = {}) {
    super(
      "crc-mismatch",
      lsn,
      `incorrect resource manager data checksum in record at ${formatLsn(lsn)}: stored CRC32C ${hex(expected)}, computed ${hex(actual)}`,
      { ...options, recordLsn: lsn },
    );
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * A page header is invalid: wrong magic, undefined flags, wrong page address, a long header that
 * disagrees with the expected system, or a timeline going backwards.
 *
 * @example
 * ```ts
 * if (e instanceof WalPageHeaderError && e.code === "page-address") {
 *   console.log(`page at ${formatLsn(e.lsn)} claims ${formatLsn(e.found as bigint)}`);
 * }
 * ```
 */
export class WalPageHeaderError extends WalDecodeError {
  override name = "WalPageHeaderError";
  /** The offending value found in the header. */
  readonly found: number | bigint;
  /** What was expected instead (when a single value was). */
  readonly expected: number | bigint | undefined;

  constructor(
    code: WalDecodeErrorCode,
    pageLsn: Lsn,
    message: string,
    found: number | bigint,
    expected: number | bigint | undefined,
    options: WalDecodeErrorOptions = {},
  ) {
    super(code, pageLsn, message, options);
    this.found = found;
    this.expected = expected;
  }
}

/**
 * A record's total length (`xl_tot_len`) is impossible, or its headers do not add up to it.
 *
 * @example
 * ```ts
 * if (e instanceof WalRecordLengthError) console.log(e.totalLength);
 * ```
 */
export class WalRecordLengthError extends WalDecodeError {
  override name = "WalRecordLengthError";
  /** The record's claimed `xl_tot_len`. */
  readonly totalLength: number;

  constructor(lsn: Lsn, totalLength: number, message: string, options: WalDecodeErrorOptions = {}) {
    super("bad-length", lsn, message, { ...options, recordLsn: options.recordLsn ?? lsn });
    this.totalLength = totalLength;
  }
}

/**
 * A record's block reference headers are invalid.
 *
 * @example
 * ```ts
 * if (e instanceof WalBlockRefError) console.log(e.blockId);
 * ```
 */
export class WalBlockRefError extends WalDecodeError {
  override name = "WalBlockRefError";
  /** The block id (or header id byte) at fault. */
  readonly blockId: number;

  constructor(lsn: Lsn, blockId: number, message: string) {
    super("bad-block-ref", lsn, message, { recordLsn: lsn });
    this.blockId = blockId;
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).toUpperCase().padStart(8, "0")}`;
}
