/**
 * WAL page headers: the short header (24 bytes) every page starts with, and the long header
 * (40 bytes) of a segment's first page, which adds the system identifier, segment size and page
 * size as a cross-check.
 *
 * Layout (native little-endian): u16 magic, u16 info, u32 timeline, u64 pageaddr, u32 rem_len,
 * 4 bytes padding; long header: + u64 system id, u32 segment size, u32 page size.
 *
 * @module
 */

import { WalPageHeaderError } from "./errors.js";
import { formatLsn, type Lsn } from "./lsn.js";
import { segmentFileNameForLsn } from "./segment.js";
import { formatForMagic, type WalFormat } from "./version.js";

/**
 * Size of the short page header.
 *
 * @example
 * ```ts
 * SHORT_PAGE_HEADER_SIZE; // 24
 * ```
 */
export const SHORT_PAGE_HEADER_SIZE = 24;

/**
 * Size of the long page header of a segment's first page.
 *
 * @example
 * ```ts
 * LONG_PAGE_HEADER_SIZE; // 40
 * ```
 */
export const LONG_PAGE_HEADER_SIZE = 40;

/**
 * A parsed page header.
 *
 * @example
 * ```ts
 * const h: PageHeader = parsePageHeader(segment, 0); // h.size === 40, h.segmentSize === 16777216
 * ```
 */
export interface PageHeader {
  /** `xlp_magic`. */
  magic: number;
  /** `xlp_info` flag bits. */
  info: number;
  /** `xlp_tli`: timeline of the first record on the page. */
  timeline: number;
  /** `xlp_pageaddr`: the LSN the page claims to be at. */
  pageAddress: Lsn;
  /** `xlp_rem_len`: bytes of a record continued from the previous page. */
  remainingLength: number;
  /** 24 (short) or 40 (long). */
  size: number;
  /** Long header only: `xlp_sysid`. */
  systemId?: bigint;
  /** Long header only: `xlp_seg_size`. */
  segmentSize?: number;
  /** Long header only: `xlp_xlog_blcksz`. */
  pageSize?: number;
}

/**
 * The size of the header at `buf[off]`, from its info bits (needs at least 4 bytes there).
 *
 * @example
 * ```ts
 * pageHeaderSize(firstPageOfSegment, 0, walFormat(15)); // 40
 * ```
 */
export function pageHeaderSize(buf: Uint8Array, off: number, format: WalFormat): number {
  const info = buf[off + 2]! | (buf[off + 3]! << 8);
  return info & format.pageInfo.longHeader ? LONG_PAGE_HEADER_SIZE : SHORT_PAGE_HEADER_SIZE;
}

/**
 * Parses the page header at `buf[off]`. Reads 24 bytes, and 40 when the long-header flag of
 * `format` (default: the one named by the magic, else 15's) is set.
 *
 * @throws RangeError when `buf` holds too few bytes at `off`.
 * @example
 * ```ts
 * const h = parsePageHeader(readFileSync("000000010000000000000001"), 0);
 * h.size; // 40
 * formatLsn(h.pageAddress); // "0/1000000"
 * ```
 */
export function parsePageHeader(buf: Buffer, off: number, format?: WalFormat): PageHeader {
  if (off < 0 || off + SHORT_PAGE_HEADER_SIZE > buf.length) {
    throw new RangeError(`a page header needs 24 bytes at offset ${off}, buffer has ${buf.length}`);
  }
  const magic = buf.readUInt16LE(off);
  const info = buf.readUInt16LE(off + 2);
  const f = format ?? formatForMagic(magic);
  const long = (info & (f?.pageInfo.longHeader ?? 0x2)) !== 0;
  const header: PageHeader = {
    magic,
    info,
    timeline: buf.readUInt32LE(off + 4),
    pageAddress: buf.readBigUInt64LE(off + 8),
    remainingLength: buf.readUInt32LE(off + 16),
    size: long ? LONG_PAGE_HEADER_SIZE : SHORT_PAGE_HEADER_SIZE,
  };
  if (long) {
    if (off + LONG_PAGE_HEADER_SIZE > buf.length) {
      throw new RangeError(
        `a long page header needs 40 bytes at offset ${off}, buffer has ${buf.length}`,
      );
    }
    header.systemId = buf.readBigUInt64LE(off + 24);
    header.segmentSize = buf.readUInt32LE(off + 32);
    header.pageSize = buf.readUInt32LE(off + 36);
  }
  return header;
}

/**
 * What a page header is checked against.
 *
 * @example
 * ```ts
 * const ctx: PageCheckContext = { pageLsn: 0x1002000n, format: walFormat(15), segmentSize: 16 << 20, pageSize: 8192 };
 * ```
 */
export interface PageCheckContext {
  /** The LSN of the page (a multiple of the page size). */
  pageLsn: Lsn;
  format: WalFormat;
  segmentSize: number;
  pageSize: number;
  /** Timeline used in segment names in messages. */
  timelineForNames?: number;
  /** When set, long headers must carry this system identifier. */
  expectedSystemId?: bigint | undefined;
  /** Timeline of the previous page: timelines never go backwards. */
  previousTimeline?: number | undefined;
  /**
   * Whether `segmentSize` is known rather than assumed (default true). While it is only
   * assumed, a short header where a segment would start under the assumption is accepted.
   */
  segmentSizeKnown?: boolean;
}

/**
 * Validates a page header as PostgreSQL's reader does (`XLogReaderValidatePageHeader`): magic,
 * defined info bits, long header on a segment's first page and its system id / segment size /
 * page size, page address equal to the page's LSN, timeline not going backwards.
 *
 * @throws WalPageHeaderError (codes `bad-magic`, `bad-header`, `page-address`, `timeline`)
 *   naming the page's LSN, segment file and offset.
 * @example
 * ```ts
 * validatePageHeader(h, { pageLsn: 0x1000000n, format: walFormat(15), segmentSize: 16 << 20, pageSize: 8192 });
 * ```
 */
export function validatePageHeader(h: PageHeader, ctx: PageCheckContext): void {
  const { pageLsn, format, segmentSize, pageSize } = ctx;
  const offset = Number(pageLsn % BigInt(segmentSize));
  const where = () =>
    `in WAL segment ${segmentFileNameForLsn(ctx.timelineForNames ?? (h.timeline || 1), pageLsn, segmentSize)}, LSN ${formatLsn(pageLsn)}, offset ${offset}`;
  if (h.magic !== format.pageMagic) {
    const known = formatForMagic(h.magic);
    throw new WalPageHeaderError(
      "bad-magic",
      pageLsn,
      `invalid magic number ${hex4(h.magic)} ${where()}: expected ${hex4(format.pageMagic)} (PostgreSQL ${format.majorVersion})${known ? `, found PostgreSQL ${known.majorVersion}'s` : ""}`,
      h.magic,
      format.pageMagic,
      { endOfWal: h.magic === 0 && h.info === 0 && h.pageAddress === 0n },
    );
  }
  if ((h.info & ~format.pageInfo.all) !== 0) {
    throw new WalPageHeaderError(
      "bad-header",
      pageLsn,
      `invalid info bits ${hex4(h.info)} ${where()}: only ${hex4(format.pageInfo.all)} are defined`,
      h.info,
      undefined,
    );
  }
  if (h.info & format.pageInfo.longHeader) {
    if (ctx.expectedSystemId !== undefined && h.systemId !== ctx.expectedSystemId) {
      throw new WalPageHeaderError(
        "bad-header",
        pageLsn,
        `WAL file is from different database system ${where()}: WAL file database system identifier is ${h.systemId}, expected ${ctx.expectedSystemId}`,
        h.systemId ?? 0n,
        ctx.expectedSystemId,
      );
    }
    if (h.segmentSize !== segmentSize) {
      throw new WalPageHeaderError(
        "bad-header",
        pageLsn,
        `WAL file is from different database system ${where()}: segment size in page header is ${h.segmentSize}, expected ${segmentSize}`,
        h.segmentSize ?? 0,
        segmentSize,
      );
    }
    if (h.pageSize !== pageSize) {
      throw new WalPageHeaderError(
        "bad-header",
        pageLsn,
        `WAL file is from different database system ${where()}: XLOG_BLCKSZ in page header is ${h.pageSize}, expected ${pageSize}`,
        h.pageSize ?? 0,
        pageSize,
      );
    }
  } else if (offset === 0 && ctx.segmentSizeKnown !== false) {
    throw new WalPageHeaderError(
      "bad-header",
      pageLsn,
      `invalid info bits ${hex4(h.info)} ${where()}: the first page of a segment must have the long header`,
      h.info,
      h.info | format.pageInfo.longHeader,
    );
  }
  if (h.pageAddress !== pageLsn) {
    throw new WalPageHeaderError(
      "page-address",
      pageLsn,
      `unexpected pageaddr ${formatLsn(h.pageAddress)} ${where()}: expected ${formatLsn(pageLsn)}`,
      h.pageAddress,
      pageLsn,
      // A page from an older, recycled segment: what the end of WAL normally looks like.
      { endOfWal: h.pageAddress < pageLsn },
    );
  }
  if (ctx.previousTimeline !== undefined && h.timeline < ctx.previousTimeline) {
    throw new WalPageHeaderError(
      "timeline",
      pageLsn,
      `out-of-sequence timeline ID ${h.timeline} (after ${ctx.previousTimeline}) ${where()}`,
      h.timeline,
      ctx.previousTimeline,
    );
  }
}

function hex4(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, "0");
}
