/**
 * WAL page and segment arithmetic, and segment file names.
 *
 * WAL is cut into pages (`XLOG_BLCKSZ`, 8192 bytes unless PostgreSQL was built otherwise) and
 * segments (files; a power of two from 1 MiB to 1 GiB, 16 MiB by default, chosen at `initdb
 * --wal-segsize`). A segment file is named by its timeline and segment number:
 * `TTTTTTTTXXXXXXXXYYYYYYYY`, all upper-case hex, where `XXXXXXXX` is the segment number divided
 * by the number of segments in 4 GiB and `YYYYYYYY` the remainder.
 *
 * @module
 */

import { assertLsn, type Lsn } from "./lsn.js";

/**
 * The default WAL segment size, 16 MiB.
 *
 * @example
 * ```ts
 * segmentNumber(parseLsn("0/1000000"), DEFAULT_SEGMENT_SIZE); // 1n
 * ```
 */
export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

/**
 * The default WAL page size (`XLOG_BLCKSZ`), 8192 bytes.
 *
 * @example
 * ```ts
 * pageOffset(parseLsn("0/2028"), DEFAULT_PAGE_SIZE); // 0x28
 * ```
 */
export const DEFAULT_PAGE_SIZE = 8192;

/** The smallest valid WAL segment size, 1 MiB. @example `assertSegmentSize(MIN_SEGMENT_SIZE)` */
export const MIN_SEGMENT_SIZE = 1024 * 1024;

/** The largest valid WAL segment size, 1 GiB. @example `assertSegmentSize(MAX_SEGMENT_SIZE)` */
export const MAX_SEGMENT_SIZE = 1024 * 1024 * 1024;

/**
 * Whether `size` is a valid WAL segment size: a power of two from 1 MiB to 1 GiB.
 *
 * @example
 * ```ts
 * isValidSegmentSize(16 * 1024 * 1024); // true
 * isValidSegmentSize(3 * 1024 * 1024); // false
 * ```
 */
export function isValidSegmentSize(size: number): boolean {
  return (
    Number.isInteger(size) &&
    size >= MIN_SEGMENT_SIZE &&
    size <= MAX_SEGMENT_SIZE &&
    (size & (size - 1)) === 0
  );
}

/**
 * Checks a segment size and returns it.
 *
 * @throws RangeError naming the value when it is not a power of two from 1 MiB to 1 GiB.
 * @example
 * ```ts
 * assertSegmentSize(1 << 20); // 1048576
 * assertSegmentSize(1000); // throws RangeError
 * ```
 */
export function assertSegmentSize(size: number): number {
  if (!isValidSegmentSize(size)) {
    throw new RangeError(
      `invalid WAL segment size ${size}: expected a power of two from 1 MiB to 1 GiB`,
    );
  }
  return size;
}

/**
 * Whether `size` is a valid WAL page size (`XLOG_BLCKSZ`): a power of two from 1 KiB to 64 KiB.
 *
 * @example
 * ```ts
 * isValidPageSize(8192); // true
 * ```
 */
export function isValidPageSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1024 && size <= 65536 && (size & (size - 1)) === 0;
}

/**
 * Checks a WAL page size and returns it.
 *
 * @throws RangeError naming the value when it is not a power of two from 1 KiB to 64 KiB.
 * @example
 * ```ts
 * assertPageSize(8192); // 8192
 * ```
 */
export function assertPageSize(size: number): number {
  if (!isValidPageSize(size)) {
    throw new RangeError(
      `invalid WAL page size ${size}: expected a power of two from 1 KiB to 64 KiB`,
    );
  }
  return size;
}

/**
 * How many segments fit in 4 GiB of WAL (PostgreSQL's `XLogSegmentsPerXLogId`): the modulus of
 * the last eight digits of a segment file name.
 *
 * @example
 * ```ts
 * segmentsPerXLogId(16 * 1024 * 1024); // 256
 * ```
 */
export function segmentsPerXLogId(segmentSize: number): number {
  return 0x1_0000_0000 / assertSegmentSize(segmentSize);
}

/**
 * The number of the segment holding `lsn` (`XLByteToSeg`).
 *
 * @example
 * ```ts
 * segmentNumber(parseLsn("1/2000000"), 16 * 1024 * 1024); // 258n
 * ```
 */
export function segmentNumber(lsn: Lsn, segmentSize: number): bigint {
  return assertLsn(lsn) / BigInt(assertSegmentSize(segmentSize));
}

/**
 * The number of the segment that holds the byte just before `lsn` (`XLByteToPrevSeg`): the
 * segment a record ending exactly at a segment boundary belongs to.
 *
 * @example
 * ```ts
 * previousSegmentNumber(parseLsn("0/2000000"), 16 * 1024 * 1024); // 1n
 * ```
 */
export function previousSegmentNumber(lsn: Lsn, segmentSize: number): bigint {
  assertLsn(lsn);
  if (lsn === 0n) throw new RangeError("LSN 0/0 has no previous segment");
  return (lsn - 1n) / BigInt(assertSegmentSize(segmentSize));
}

/**
 * The offset of `lsn` within its segment (`XLogSegmentOffset`).
 *
 * @example
 * ```ts
 * segmentOffset(parseLsn("0/1002028"), 16 * 1024 * 1024); // 0x2028
 * ```
 */
export function segmentOffset(lsn: Lsn, segmentSize: number): number {
  return Number(assertLsn(lsn) & BigInt(assertSegmentSize(segmentSize) - 1));
}

/**
 * The offset of `lsn` within its WAL page.
 *
 * @example
 * ```ts
 * pageOffset(parseLsn("0/1002028"), 8192); // 0x28
 * ```
 */
export function pageOffset(lsn: Lsn, pageSize: number = DEFAULT_PAGE_SIZE): number {
  return Number(assertLsn(lsn) & BigInt(assertPageSize(pageSize) - 1));
}

/**
 * The LSN of the start of the page holding `lsn`.
 *
 * @example
 * ```ts
 * pageStart(parseLsn("0/1002028"), 8192); // parseLsn("0/1002000")
 * ```
 */
export function pageStart(lsn: Lsn, pageSize: number = DEFAULT_PAGE_SIZE): Lsn {
  return assertLsn(lsn) & ~BigInt(assertPageSize(pageSize) - 1);
}

/**
 * The LSN of the start of the segment holding `lsn`.
 *
 * @example
 * ```ts
 * segmentStart(parseLsn("0/1002028"), 16 * 1024 * 1024); // parseLsn("0/1000000")
 * ```
 */
export function segmentStart(lsn: Lsn, segmentSize: number): Lsn {
  return assertLsn(lsn) & ~BigInt(assertSegmentSize(segmentSize) - 1);
}

/**
 * The LSN where segment `segno` starts (`XLogSegNoOffsetToRecPtr` with offset 0).
 *
 * @throws RangeError when the segment lies beyond the LSN range.
 * @example
 * ```ts
 * segmentStartLsn(258n, 16 * 1024 * 1024); // parseLsn("1/2000000")
 * ```
 */
export function segmentStartLsn(segno: bigint, segmentSize: number): Lsn {
  const size = BigInt(assertSegmentSize(segmentSize));
  if (typeof segno !== "bigint" || segno < 0n || segno > 0xffff_ffff_ffff_ffffn / size) {
    throw new RangeError(`invalid segment number ${String(segno)} for segment size ${segmentSize}`);
  }
  return segno * size;
}

/**
 * A WAL segment file name, parsed.
 *
 * @example
 * ```ts
 * const s: SegmentName = parseSegmentFileName("000000010000000000000002", 16 << 20)!; // { timeline: 1, segno: 2n, partial: false }
 * ```
 */
export interface SegmentName {
  /** Timeline ID (1..2^32-1). */
  timeline: number;
  /** Segment number. */
  segno: bigint;
  /** Whether the name had pg_receivewal's `.partial` suffix. */
  partial: boolean;
}

const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$/;
const HISTORY_NAME = /^([0-9A-F]{8})\.history$/;

/**
 * The file name of segment `segno` on `timeline` (`XLogFileName`).
 *
 * @throws RangeError when the timeline is not in 1..2^32-1 or the segment number is out of range.
 * @example
 * ```ts
 * segmentFileName(1, 1n, 16 * 1024 * 1024); // "000000010000000000000001"
 * segmentFileName(1, 258n, 16 * 1024 * 1024); // "000000010000000100000002"
 * ```
 */
export function segmentFileName(timeline: number, segno: bigint, segmentSize: number): string {
  checkTimeline(timeline);
  const per = BigInt(segmentsPerXLogId(segmentSize));
  segmentStartLsn(segno, segmentSize);
  return hex8(timeline) + hex8(Number(segno / per)) + hex8(Number(segno % per));
}

/**
 * The file name of the segment holding `lsn` on `timeline`.
 *
 * @example
 * ```ts
 * segmentFileNameForLsn(1, parseLsn("FFFFFFFF/FFFFE000"), 16 * 1024 * 1024);
 * // "00000001FFFFFFFF000000FF"
 * ```
 */
export function segmentFileNameForLsn(timeline: number, lsn: Lsn, segmentSize: number): string {
  return segmentFileName(timeline, segmentNumber(lsn, segmentSize), segmentSize);
}

/**
 * Parses a segment file name (optionally with `.partial`) into timeline and segment number
 * (`XLogFromFileName`). Returns `undefined` for names that are not segment names.
 *
 * @throws RangeError when the name is well-formed but impossible for this segment size (its
 *   low part is not below the number of segments per 4 GiB, or the timeline is 0).
 * @example
 * ```ts
 * parseSegmentFileName("000000010000000100000002", 16 * 1024 * 1024);
 * // { timeline: 1, segno: 258n, partial: false }
 * parseSegmentFileName("000000010000000000000001.partial", 16 * 1024 * 1024)?.partial; // true
 * parseSegmentFileName("00000002.history", 16 * 1024 * 1024); // undefined
 * ```
 */
export function parseSegmentFileName(name: string, segmentSize: number): SegmentName | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (m === null) return undefined;
  const per = segmentsPerXLogId(segmentSize);
  const timeline = Number.parseInt(m[1]!, 16);
  const log = Number.parseInt(m[2]!, 16);
  const seg = Number.parseInt(m[3]!, 16);
  if (timeline === 0) throw new RangeError(`segment file name ${name} has timeline 0`);
  if (seg >= per) {
    throw new RangeError(
      `segment file name ${name} is impossible with ${segmentSize}-byte segments: its last part must be below ${per.toString(16).toUpperCase()}`,
    );
  }
  return { timeline, segno: BigInt(log) * BigInt(per) + BigInt(seg), partial: m[4] !== undefined };
}

/**
 * Whether `name` is a WAL segment file name (24 upper-case hex digits; `IsXLogFileName`).
 *
 * @example
 * ```ts
 * isSegmentFileName("000000010000000000000001"); // true
 * isSegmentFileName("000000010000000000000001.partial"); // false
 * ```
 */
export function isSegmentFileName(name: string): boolean {
  const m = SEGMENT_NAME.exec(name);
  return m !== null && m[4] === undefined;
}

/**
 * Whether `name` is a partial segment file name as pg_receivewal writes it
 * (`IsPartialXLogFileName`).
 *
 * @example
 * ```ts
 * isPartialSegmentFileName("000000010000000000000001.partial"); // true
 * ```
 */
export function isPartialSegmentFileName(name: string): boolean {
  const m = SEGMENT_NAME.exec(name);
  return m !== null && m[4] !== undefined;
}

/**
 * The name of a timeline history file (`TLHistoryFileName`).
 *
 * @example
 * ```ts
 * historyFileName(2); // "00000002.history"
 * ```
 */
export function historyFileName(timeline: number): string {
  checkTimeline(timeline);
  return `${hex8(timeline)}.history`;
}

/**
 * The timeline of a timeline history file name, or `undefined` if `name` is not one
 * (`IsTLHistoryFileName`).
 *
 * @example
 * ```ts
 * parseHistoryFileName("0000000A.history"); // 10
 * parseHistoryFileName("0000000A.partial"); // undefined
 * ```
 */
export function parseHistoryFileName(name: string): number | undefined {
  const m = HISTORY_NAME.exec(name);
  return m === null ? undefined : Number.parseInt(m[1]!, 16);
}

function checkTimeline(timeline: number): void {
  if (!Number.isInteger(timeline) || timeline < 1 || timeline > 0xffff_ffff) {
    throw new RangeError(`invalid timeline ${timeline}: expected an integer in 1..2^32-1`);
  }
}

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, "0");
}
