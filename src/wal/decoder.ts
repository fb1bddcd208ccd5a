/**
 * The streaming WAL decoder: bytes in (split anywhere), records out.
 *
 * @module
 */

import {
  crcListParts,
  isListFor,
  type RecordCrcList,
  type readWithRecordCrcs,
} from "./crc_list.js";
import { crcWordView, recordCrc32cIn } from "./crc32c.js";
import {
  WalCrcMismatchError,
  WalDecodeError,
  WalPageHeaderError,
  WalRecordLengthError,
} from "./errors.js";
import { assertLsn, formatLsn, formatLsnParts, type Lsn, lsnFromParts } from "./lsn.js";
import { type NativeCrc, nativeCrc } from "./native.js";
import { parsePageHeader, validatePageHeader } from "./page.js";
import {
  decodeRecordInto,
  RECORD_HEADER_SIZE,
  recordImageBytes,
  scanRecordInto,
  WalRecord,
} from "./record.js";
import {
  assertPageSize,
  assertSegmentSize,
  DEFAULT_PAGE_SIZE,
  DEFAULT_SEGMENT_SIZE,
  isValidSegmentSize,
  segmentFileNameForLsn,
} from "./segment.js";
import { DEFAULT_WAL_FORMAT, formatForMagic, type WalFormat, walFormat } from "./version.js";

/**
 * Options of {@link WalDecoder}.
 *
 * @example
 * ```ts
 * const opts: WalDecoderOptions = { startLsn: parseLsn("0/1000000"), segmentSize: 16 << 20 };
 * ```
 */
export interface WalDecoderOptions {
  /**
   * The LSN of the first byte pushed: a record start (replication restarts at record
   * boundaries) or a page start. At a page start whose page begins with the tail of an earlier
   * record (FIRST_IS_CONTRECORD), that tail is skipped, as `pg_waldump` does.
   */
  startLsn: Lsn;
  /**
   * WAL segment size. Default: taken from the first long page header read, 16 MiB until then
   * (pass it when decoding starts mid-segment in a cluster with another size).
   */
  segmentSize?: number;
  /** WAL page size (`XLOG_BLCKSZ`), default 8192. */
  pageSize?: number;
  /** Data page size (`BLCKSZ`), default 8192: needed for hole lengths of uncompressed images. */
  blockSize?: number;
  /** Major version (15..18). Default: named by the magic of the first page header read. */
  majorVersion?: number;
  /** When set, long page headers must carry this system identifier. */
  expectedSystemId?: bigint;
  /** Check each record's CRC32C (default true). */
  verifyCrc?: boolean;
  /**
   * Use the native CRC-32C addon when it is built (default true): the CRCs of a chunk's
   * records are then computed in one call. False computes them in JavaScript; the results,
   * and the errors, are the same.
   */
  nativeCrc?: boolean;
  /** Lower bound for the largest acceptable record (default: the version's limit, ~1 GiB). */
  maxRecordSize?: number;
  /**
   * Fill in each record's block references (default true). When false, records are checked
   * exactly as thoroughly (the same errors for the same bytes) and carry every scalar field
   * (`fpiLen`, `mainDataLen`, `origin`, ...), but `blocks` stays empty: cheaper for callers
   * that only count, such as `waldump --stats`.
   */
  decodeBlocks?: boolean;
}

/**
 * What the decoder is waiting for after `next()` returned `undefined`:
 * `need-input` (push more bytes), `end` (`end()` was called and the input ended cleanly at a
 * record boundary), `failed` (an error was thrown; `next()` throws it again).
 *
 * @example
 * ```ts
 * if (dec.next() === undefined && dec.state === "need-input") await more();
 * ```
 */
export type WalDecoderState = "need-input" | "end" | "failed";

/**
 * What {@link WalDecoder.tally} adds to: per resource manager id, the record count at
 * `sums[id]`, the record bytes (without images) at `sums[256 + id]` and the image bytes at
 * `sums[512 + id]`; the number of records; and where the last record counted ends
 * (`endHi * 2^32 + endLo`; `endHi` is -1 until one is).
 *
 * @example
 * ```ts
 * const t = newRecordTally();
 * dec.tally(t);
 * t.sums[10]; // Heap records counted
 * ```
 */
export interface RecordTally {
  readonly sums: Float64Array;
  records: number;
  endHi: number;
  endLo: number;
}

/**
 * An empty {@link RecordTally}.
 *
 * @example
 * ```ts
 * newRecordTally().records; // 0
 * ```
 */
export function newRecordTally(): RecordTally {
  return { sums: new Float64Array(768), records: 0, endHi: -1, endLo: 0 };
}

const M_PAGE_HEADER = 0;
const M_RECORD = 1;
const M_CONT = 2;
const M_SKIP = 3;
const M_FAILED = 4;

const CTX_START = 0; // a record must start after this page header
const CTX_CONT = 1; // a record is being assembled: the page must continue it
const CTX_INITIAL = 2; // first page read: skip the tail of an earlier record

const TWO32 = 0x1_0000_0000;
const EMPTY = Buffer.alloc(0);

/** Records whose CRCs are computed in one native call, at most. */
const CRC_BATCH = 8192;
/** Below this many bytes left in a chunk, records are checked one by one. */
const LIST_MIN_BYTES = 4096;

/**
 * Decodes PostgreSQL WAL (15, 16, 17, 18) from bytes pushed in any pieces: replication `w`
 * messages, file reads, whole segments. Records come out through {@link WalDecoder.next}.
 *
 * Memory: the decoder keeps references to pushed chunks until it has consumed them (do not
 * reuse their memory meanwhile; copy pg's replication chunks first). A record lying in one
 * chunk is decoded in place; only records that span chunks or pages are copied. The returned
 * {@link WalRecord} is one reused object, valid until the next call to `next()`.
 *
 * Errors: invalid WAL throws a {@link WalDecodeError} subclass naming the LSN (and `next()`
 * keeps throwing it). Errors whose `endOfWal` is true are what the end of written WAL looks like
 * (zeros, a recycled segment's page, input ending mid-record after `end()`).
 *
 * @example
 * ```ts
 * const dec = new WalDecoder({ startLsn: parseLsn("0/1000000") });
 * dec.push(readFileSync("pg_wal/000000010000000000000001"));
 * dec.end();
 * try {
 *   for (const rec of dec.records()) console.log(formatLsn(rec.lsn), rec.rmid, rec.totLen);
 * } catch (e) {
 *   if (!(e instanceof WalDecodeError && e.endOfWal)) throw e;
 * }
 * ```
 */
export class WalDecoder {
  /** The LSN of the first byte pushed. */
  readonly startLsn: Lsn;
  private readonly pageSize: number;
  private readonly pageMask: number;
  private readonly blockSize: number;
  private readonly expectedSystemId: bigint | undefined;
  private readonly verifyCrc: boolean;
  private readonly decodeBlocks: boolean;
  private readonly maxRecordSizeOption: number | undefined;
  private segSize: number;
  private segSizeKnown: boolean;
  private format: WalFormat | undefined;

  // Input: the current chunk and the ones queued behind it.
  private buf: Buffer = EMPTY;
  private off = 0;
  private readonly queue: Buffer[] = [];
  private readonly queueLists: (RecordCrcList | undefined)[] = [];
  private qHead = 0;
  private buffered = 0;
  private ended = false;

  // Position of buf[off].
  private posHi: number;
  private posLo: number;

  private mode: number;
  private hdrCtx: number;
  private pageHdr = 0; // size of the current page's header, 0 while unknown
  private skipLeft = 0;
  private afterSkip = M_RECORD;
  private afterSkipCtx = CTX_START;

  private prevHi = -1; // last record returned; -1: none yet (first record is "random access")
  private prevLo = 0;
  private endHi = 0;
  private endLo = 0;
  private tli: number | undefined;
  private sysId: bigint | undefined;

  // Assembly of records that span pages or chunks.
  private asm: Buffer = EMPTY;
  private asmLen = 0;
  private asmTot = 0;
  private asmChecked = false;
  private asmListed = false; // asmCrc holds the CRC listed for the record being assembled
  private asmCrc = 0;
  private recHi = 0;
  private recLo = 0;

  private overwrittenHi = -1; // abandoned record awaiting its XLOG_OVERWRITE_CONTRECORD
  private overwrittenLo = 0;
  private readonly abandoned: Lsn[] = [];
  private skippedContinuation = 0;

  private readonly rec = new WalRecord();
  private crcBuf: Buffer = EMPTY; // the buffer `crcWords` views
  private crcWords: Int32Array | undefined;
  private crcBuf2: Buffer = EMPTY; // and the one viewed before it
  private crcWords2: Int32Array | undefined;
  // Batch CRC (native addon): the records of the current chunk, listed ahead of decoding, and
  // their CRCs computed in one call. `listBuf` is the chunk listed (reset when the chunk
  // changes); records from `listEnd` on were not looked at.
  private readonly native: NativeCrc | undefined;
  private listBuf: Buffer | undefined;
  private listOffs: Int32Array = new Int32Array(0);
  private listOut: Int32Array = new Int32Array(0);
  // The arrays listRecords fills (listOffs/listOut may instead be a pushed RecordCrcList's).
  private ownOffs: Int32Array = new Int32Array(0);
  private ownOut: Int32Array = new Int32Array(0);
  private listN = 0;
  private listAt = 0;
  private listEnd = 0;
  private readonly listResult = new Int32Array(2);
  // The buffer `tally` last read, and a view of it as 32-bit words (undefined: not aligned).
  private tallyBuf: Buffer = EMPTY;
  private tallyWords: Int32Array | undefined;
  private readonly scratch = Buffer.alloc(64);
  private failure: WalDecodeError | undefined;
  private finished = false;

  /**
   * @throws TypeError/RangeError for invalid options (start LSN not 8-byte aligned, invalid sizes,
   *   unsupported version).
   * @example
   * ```ts
   * new WalDecoder({ startLsn: parseLsn("16/B374D848"), segmentSize: 64 << 20 });
   * ```
   */
  constructor(options: WalDecoderOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError("WalDecoder needs an options object with startLsn");
    }
    this.startLsn = assertLsn(options.startLsn, "startLsn");
    if ((this.startLsn & 7n) !== 0n) {
      throw new RangeError(
        `startLsn ${formatLsn(this.startLsn)} is not a record boundary: records start at multiples of 8`,
      );
    }
    this.pageSize = assertPageSize(options.pageSize ?? DEFAULT_PAGE_SIZE);
    this.pageMask = this.pageSize - 1;
    this.blockSize = assertPageSize(options.blockSize ?? 8192);
    this.segSizeKnown = options.segmentSize !== undefined;
    this.segSize = assertSegmentSize(options.segmentSize ?? DEFAULT_SEGMENT_SIZE);
    this.format = options.majorVersion === undefined ? undefined : walFormat(options.majorVersion);
    this.expectedSystemId = options.expectedSystemId;
    this.verifyCrc = options.verifyCrc ?? true;
    this.native = this.verifyCrc && options.nativeCrc !== false ? nativeCrc() : undefined;
    this.decodeBlocks = options.decodeBlocks ?? true;
    if (options.maxRecordSize !== undefined) {
      if (
        !Number.isSafeInteger(options.maxRecordSize) ||
        options.maxRecordSize < RECORD_HEADER_SIZE
      ) {
        throw new RangeError(
          `maxRecordSize must be an integer >= 24, got ${options.maxRecordSize}`,
        );
      }
    }
    this.maxRecordSizeOption = options.maxRecordSize;
    this.posHi = Number(this.startLsn >> 32n);
    this.posLo = Number(this.startLsn & 0xffff_ffffn);
    if ((this.posLo & this.pageMask) === 0) {
      this.mode = M_PAGE_HEADER;
      this.hdrCtx = CTX_INITIAL;
    } else {
      this.mode = M_RECORD;
      this.hdrCtx = CTX_START;
    }
  }

  /**
   * Appends bytes contiguous with what was pushed before (the first push starts at
   * `startLsn`). The decoder keeps a reference to `chunk` until it has consumed it, and its
   * bytes must not change until then (`bufferedBytes` is 0): CRCs may be computed ahead of
   * decoding, for many records of a chunk at once, so bytes changed in between would not be
   * checked again. The same Buffer may be pushed again, with new contents, once consumed.
   *
   * `crcs`: the CRCs of the chunk's records, computed ahead by {@link readWithRecordCrcs} for
   * this very chunk; used only when the decoder's page size is the list's and the chunk starts
   * at a page start (else the CRCs are computed here, as without it).
   *
   * @throws TypeError when `chunk` is not a Uint8Array, after `end()`, or when `crcs` is not the
   *   list made for `chunk`.
   * @example
   * ```ts
   * client.connection.on("copyData", (m) => dec.push(Buffer.from(m.chunk.subarray(25))));
   * ```
   */
  push(chunk: Uint8Array, crcs?: RecordCrcList): void {
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError(`push() takes a Buffer or Uint8Array, got ${typeof chunk}`);
    }
    if (this.ended) throw new TypeError("push() called after end()");
    if (crcs !== undefined && !isListFor(crcs, chunk)) {
      throw new TypeError(
        "push(chunk, crcs): crcs must be the list readWithRecordCrcs() made for this chunk",
      );
    }
    if (chunk.length === 0) return;
    const b = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.buffered += b.length;
    if (this.off === this.buf.length && this.qHead === this.queue.length) {
      this.buf = b;
      this.adoptList(b, crcs);
      this.off = 0;
      this.queue.length = 0;
      this.queueLists.length = 0;
      this.qHead = 0;
    } else {
      this.queue.push(b);
      this.queueLists.push(crcs);
    }
  }

  /** The CRCs of `buf`'s records: those computed ahead (`crcs`), or none listed yet. */
  private adoptList(buf: Buffer, crcs: RecordCrcList | undefined): void {
    // A list is only good for the page layout it was walked with: this page size, and the
    // chunk starting at a page start.
    if (
      crcs === undefined ||
      this.native === undefined ||
      crcs.pageSize !== this.pageSize ||
      (this.posLo & this.pageMask) !== 0
    ) {
      this.listBuf = undefined;
      return;
    }
    const { offsets, crcs: values, end } = crcListParts(crcs);
    this.listBuf = buf;
    this.listOffs = offsets;
    this.listOut = values;
    this.listN = crcs.count;
    this.listAt = 0;
    this.listEnd = end;
  }

  /**
   * Declares that no more bytes will come. Once the buffered records are read, `next()` returns
   * `undefined` with state `end`, or throws a `truncated` error if the input stopped mid-record.
   *
   * @example
   * ```ts
   * dec.push(lastChunk);
   * dec.end();
   * ```
   */
  end(): void {
    this.ended = true;
  }

  /**
   * The next record, or `undefined` when more input is needed (or the input has ended: see
   * {@link WalDecoder.state}). The record object is reused: valid until the next call.
   *
   * @throws WalDecodeError (or a subclass) naming the LSN when the WAL is invalid there.
   * @example
   * ```ts
   * let rec;
   * while ((rec = dec.next()) !== undefined) handle(rec);
   * if (dec.state === "need-input") await moreData();
   * ```
   */
  next(): WalRecord | undefined {
    if (this.failure !== undefined) throw this.failure;
    try {
      return this.step();
    } catch (e) {
      if (e instanceof WalDecodeError) {
        this.failure = e;
        this.mode = M_FAILED;
      }
      throw e;
    }
  }

  /**
   * Iterates over the records available now (stops when more input is needed or at the end).
   * Each yielded record is valid until the iteration continues.
   *
   * @example
   * ```ts
   * for (const rec of dec.records()) stats.add(rec.rmid, rec.totLen);
   * ```
   */
  *records(): Generator<WalRecord, void, undefined> {
    for (;;) {
      const r = this.next();
      if (r === undefined) return;
      yield r;
    }
  }

  /**
   * Same as {@link WalDecoder.records}.
   *
   * @example
   * ```ts
   * for (const rec of dec) console.log(rec.totLen);
   * ```
   */
  [Symbol.iterator](): Generator<WalRecord, void, undefined> {
    return this.records();
  }

  /**
   * Why the last `next()` returned `undefined` (or `failed` after an error).
   *
   * @example
   * ```ts
   * dec.state; // "need-input"
   * ```
   */
  get state(): WalDecoderState {
    if (this.failure !== undefined) return "failed";
    return this.finished ? "end" : "need-input";
  }

  /**
   * The error that stopped decoding, if any.
   *
   * @example
   * ```ts
   * dec.error?.code; // "crc-mismatch"
   * ```
   */
  get error(): WalDecodeError | undefined {
    return this.failure;
  }

  /**
   * The LSN of the next byte the decoder will consume.
   *
   * @example
   * ```ts
   * formatLsn(dec.position);
   * ```
   */
  get position(): Lsn {
    return lsnFromParts(this.posHi, this.posLo);
  }

  /**
   * Where the record after the last one returned starts (`EndRecPtr`): everything before it
   * has been decoded. `undefined` before the first record.
   *
   * @example
   * ```ts
   * reportFlushed(dec.decodedUpTo);
   * ```
   */
  get decodedUpTo(): Lsn | undefined {
    return this.prevHi < 0 ? undefined : lsnFromParts(this.endHi, this.endLo);
  }

  /**
   * Bytes pushed but not consumed yet.
   *
   * @example
   * ```ts
   * if (dec.bufferedBytes > 1 << 24) pauseSocket();
   * ```
   */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * The major version, once known (from the option or the first page header).
   *
   * @example
   * ```ts
   * dec.majorVersion; // 15
   * ```
   */
  get majorVersion(): number | undefined {
    return this.format?.majorVersion;
  }

  /**
   * The segment size in use (the option, the first long header's, or the 16 MiB default).
   *
   * @example
   * ```ts
   * dec.segmentSize; // 16777216
   * ```
   */
  get segmentSize(): number {
    return this.segSize;
  }

  /**
   * The system identifier from the last long page header read.
   *
   * @example
   * ```ts
   * dec.systemId; // 7311536153431071234n
   * ```
   */
  get systemId(): bigint | undefined {
    return this.sysId;
  }

  /**
   * The timeline of the last page header read.
   *
   * @example
   * ```ts
   * dec.timeline; // 1
   * ```
   */
  get timeline(): number | undefined {
    return this.tli;
  }

  /**
   * LSNs of partial records abandoned because the next page was marked
   * FIRST_IS_OVERWRITE_CONTRECORD (they are not returned as records).
   *
   * @example
   * ```ts
   * dec.abandonedRecords.map(formatLsn);
   * ```
   */
  get abandonedRecords(): readonly Lsn[] {
    return this.abandoned;
  }

  /**
   * Bytes of an earlier record's tail skipped at the start (when `startLsn` is a page start
   * whose page begins with a continuation).
   *
   * @example
   * ```ts
   * dec.skippedBytes; // 3208
   * ```
   */
  get skippedBytes(): number {
    return this.skippedContinuation;
  }

  /**
   * Counts records into `into` instead of returning them, as many as can be taken quickly from
   * the chunk being read: the same records `next()` would return, checked exactly as
   * thoroughly, without filling in a {@link WalRecord} for each. It stops (returning how many it
   * counted) before the first record at or after `before`, and before anything it leaves to
   * `next()`: a record that continues beyond the chunk (or on a page with a long header), a
   * header split across pages, an XLOG_SWITCH, the chunk's end, the first record decoded, and
   * anything invalid (so that `next()` throws the error it always would). Call `next()` then,
   * and handle what it returns as usual.
   *
   * @example
   * ```ts
   * const t = newRecordTally();
   * for (;;) {
   *   dec.tally(t);
   *   const rec = dec.next();
   *   if (rec === undefined) break;
   *   addToTally(t, rec);
   * }
   * ```
   */
  tally(into: RecordTally, before?: Lsn): number {
    const fmt = this.format;
    if (
      this.mode !== M_RECORD ||
      fmt === undefined ||
      this.prevHi < 0 ||
      this.overwrittenHi >= 0 ||
      this.pageHdr === 0 ||
      !this.segSizeKnown
    )
      return 0;
    const buf = this.buf;
    if (buf !== this.tallyBuf) {
      this.tallyBuf = buf;
      this.tallyWords = crcWordView(buf);
    }
    // Record and page headers are read as 32-bit words: records start at multiples of 8, so
    // their offsets are multiples of 4 when the chunk starts at one (file reads do; pieces of
    // a replication stream need not).
    const words = this.tallyWords;
    if (words === undefined || ((this.posLo - this.off) & 3) !== 0) return 0;
    let stopHi = TWO32;
    let stopLo = 0;
    if (before !== undefined) {
      stopHi = Number(before >> 32n);
      stopLo = Number(before & 0xffff_ffffn);
    }
    const len = buf.length;
    const pageSize = this.pageSize;
    const mask = this.pageMask;
    const segMask = this.segSize - 1;
    const pi = fmt.pageInfo;
    const pageMagic = fmt.pageMagic;
    const badInfo = ~pi.all | pi.longHeader | pi.firstIsContrecord;
    // A page continuing a record: no unknown flags, no long header, not abandoned.
    const badContInfo = ~pi.all | pi.longHeader | pi.firstIsOverwriteContrecord;
    const maxRecord = this.maxRecordSize();
    const maxRmgr = fmt.maxBuiltinRmgrId;
    const rmXlog = fmt.rmXlogId;
    const switchInfo = fmt.xlogSwitchInfo;
    const blockSize = this.blockSize;
    const verify = this.verifyCrc;
    const native = this.native;
    const sums = into.sums;
    const start = this.off;
    let off = start;
    let hi = this.posHi;
    let lo = this.posLo;
    let prevHi = this.prevHi;
    let prevLo = this.prevLo;
    let tli = this.tli ?? 0;
    let pageHdr = this.pageHdr;
    // The CRC list of this chunk, in locals (listRecords replaces it).
    let listing = buf === this.listBuf;
    let listOffs = this.listOffs;
    let listOut = this.listOut;
    let listN = this.listN;
    let listAt = this.listAt;
    let listEnd = this.listEnd;
    let doneHi = hi;
    let doneLo = lo;
    let n = 0;
    for (;;) {
      let pageOff = lo & mask;
      if (pageOff === 0) {
        // A short page header in the middle of a segment, all as expected; else `next()`.
        if ((lo & segMask) === 0 || len - off < 24) break;
        const w = off >> 2;
        const first = words[w]!; // xlp_magic, xlp_info
        const info = first >>> 16;
        const pageTli = words[w + 1]! >>> 0;
        if (
          (first & 0xffff) !== pageMagic ||
          (info & badInfo) !== 0 ||
          pageTli < tli ||
          words[w + 2] !== (lo | 0) ||
          words[w + 3] !== (hi | 0)
        )
          break;
        tli = pageTli;
        pageHdr = 24;
        off += 24;
        lo += 24;
        pageOff = 24;
      }
      if (hi > stopHi || (hi === stopHi && lo >= stopLo)) break;
      const avail = len - off;
      if (avail < RECORD_HEADER_SIZE || pageOff < pageHdr) break;
      const w = off >> 2;
      const totLen = words[w]! >>> 0;
      const firstPiece = pageSize - pageOff;
      // Too short, or a header that does not fit on this page: left to `next()`.
      if (totLen < RECORD_HEADER_SIZE || firstPiece < RECORD_HEADER_SIZE) break;
      const infoWord = words[w + 4]!; // xl_info, xl_rmid
      const rmid = (infoWord >>> 8) & 0xff;
      if (
        (rmid > maxRmgr && rmid < 128) ||
        (rmid === rmXlog && (infoWord & 0xf0) === switchInfo) ||
        words[w + 2] !== (prevLo | 0) ||
        words[w + 3] !== (prevHi | 0)
      )
        break;
      // Where the record (and its padding) ends: in this chunk, or left to `next()`.
      let endOff: number;
      let endLo: number;
      let endHi = hi;
      let endTli = tli;
      if (totLen <= firstPiece) {
        const aligned = (totLen + 7) & ~7;
        if (aligned > avail) break;
        endOff = off + aligned;
        endLo = lo + aligned;
      } else {
        // Continued on later pages: each must start with a short page header continuing this
        // record, as `next()` requires (else `next()` says what is wrong, or abandons it).
        if (totLen > maxRecord) break;
        let pos = off + firstPiece;
        let pLo = lo + firstPiece;
        let pHi = hi;
        let got = firstPiece;
        let pieces = true;
        while (got < totLen) {
          if (pLo >= TWO32) {
            pLo -= TWO32;
            pHi++;
          }
          const pw = pos >> 2;
          if ((pLo & segMask) === 0 || len - pos < 24) {
            pieces = false;
            break;
          }
          const first = words[pw]!;
          const info = first >>> 16;
          const pageTli = words[pw + 1]! >>> 0;
          if (
            (first & 0xffff) !== pageMagic ||
            (info & badContInfo) !== 0 ||
            (info & pi.firstIsContrecord) === 0 ||
            pageTli < endTli ||
            words[pw + 2] !== (pLo | 0) ||
            words[pw + 3] !== (pHi | 0) ||
            words[pw + 4]! >>> 0 !== totLen - got
          ) {
            pieces = false;
            break;
          }
          endTli = pageTli;
          const k = Math.min(pageSize - 24, totLen - got);
          if (pos + 24 + k > len) {
            pieces = false;
            break;
          }
          pos += 24 + k;
          pLo += 24 + k;
          got += k;
        }
        if (!pieces) break;
        const pad = (8 - (pLo & 7)) & 7;
        if (pos + pad > len) break;
        endOff = pos + pad;
        endLo = pLo + pad;
        endHi = pHi;
      }
      if (verify) {
        let actual: number;
        if (native !== undefined && (avail >= LIST_MIN_BYTES || (listing && off < listEnd))) {
          if (!listing || off >= listEnd) {
            this.listRecords(native, buf, off, lo);
            listing = true;
            listOffs = this.listOffs;
            listOut = this.listOut;
            listN = this.listN;
            listAt = 0;
            listEnd = this.listEnd;
          }
          while (listAt < listN && listOffs[listAt]! < off) listAt++;
          if (listAt === listN || listOffs[listAt] !== off) break;
          actual = listOut[listAt]!;
        } else if (totLen <= firstPiece) actual = this.computeCrc(buf, off, totLen) | 0;
        else break; // a record in pieces is checked assembled, by next()
        if (actual !== words[w + 5]) break;
      }
      // Its block headers must lie on its first page (the walk stops short of the next one).
      const fpi = recordImageBytes(
        buf,
        off,
        totLen,
        fmt,
        blockSize,
        off + Math.min(totLen, firstPiece),
      );
      if (fpi < 0) break;
      sums[rmid]!++;
      sums[256 + rmid]! += totLen - fpi;
      sums[512 + rmid]! += fpi;
      n++;
      prevHi = hi;
      prevLo = lo;
      off = endOff;
      lo = endLo;
      hi = endHi;
      if (lo >= TWO32) {
        lo -= TWO32;
        hi++;
      }
      doneHi = hi;
      doneLo = lo;
      if (endTli !== tli) tli = endTli;
      if (totLen > firstPiece) pageHdr = 24;
    }
    if (listing) this.listAt = listAt;
    // What was consumed: the records counted and the page headers before them (a page header
    // read just before stopping is consumed too, as `next()` would have).
    this.off = off;
    this.buffered -= off - start;
    this.posHi = hi;
    this.posLo = lo;
    if (tli !== 0) this.tli = tli;
    this.pageHdr = pageHdr;
    if (n > 0) {
      // The end of the last record counted: not the position, which may lie past a page
      // header read after it.
      this.prevHi = prevHi;
      this.prevLo = prevLo;
      this.endHi = doneHi;
      this.endLo = doneLo;
      into.records += n;
      into.endHi = doneHi;
      into.endLo = doneLo;
    }
    return n;
  }

  // ---------------------------------------------------------------------------------------

  private step(): WalRecord | undefined {
    for (;;) {
      switch (this.mode) {
        case M_RECORD: {
          if ((this.posLo & this.pageMask) === 0) {
            this.mode = M_PAGE_HEADER;
            this.hdrCtx = CTX_START;
            continue;
          }
          if (this.off === this.buf.length && !this.nextChunk()) return this.starved();
          const r = this.recordStart();
          if (r === null) return this.starved();
          if (r !== undefined) return r;
          continue;
        }
        case M_CONT: {
          if ((this.posLo & this.pageMask) === 0) {
            this.mode = M_PAGE_HEADER;
            this.hdrCtx = CTX_CONT;
            continue;
          }
          if (this.off === this.buf.length && !this.nextChunk()) return this.starved();
          const r = this.continueRecord();
          if (r !== undefined) return r;
          continue;
        }
        case M_PAGE_HEADER:
          if (!this.pageHeader()) return this.starved();
          continue;
        case M_SKIP: {
          const n = this.consumeUpTo(this.skipLeft);
          this.skipLeft -= n;
          if (this.skipLeft > 0) return this.starved();
          this.mode = this.afterSkip;
          this.hdrCtx = this.afterSkipCtx;
          continue;
        }
        default:
          throw this.failure ?? new Error("WalDecoder is in an invalid state");
      }
    }
  }

  /** No more bytes buffered: wait for input, or finish, or report truncation. */
  private starved(): undefined {
    if (!this.ended) return undefined;
    const clean =
      this.mode === M_SKIP ||
      (this.buffered === 0 &&
        (this.mode === M_RECORD || (this.mode === M_PAGE_HEADER && this.hdrCtx !== CTX_CONT)));
    if (clean) {
      this.finished = true;
      return undefined;
    }
    const inRecord =
      this.mode === M_CONT || (this.mode === M_PAGE_HEADER && this.hdrCtx === CTX_CONT);
    const at = this.position;
    const what = inRecord
      ? `the record at ${formatLsnParts(this.recHi, this.recLo)} (${this.asmLen} of ${this.asmTot} bytes read)`
      : this.mode === M_PAGE_HEADER
        ? `the page header at ${formatLsn(at)} (${this.buffered} bytes left)`
        : `the record at ${formatLsn(at)} (${this.buffered} bytes left)`;
    throw new WalDecodeError(
      "truncated",
      at,
      `WAL input ended at ${formatLsn(at)} in the middle of ${what}`,
      {
        endOfWal: true,
        ...(inRecord ? { recordLsn: lsnFromParts(this.recHi, this.recLo) } : {}),
      },
    );
  }

  private nextChunk(): boolean {
    while (this.qHead < this.queue.length) {
      const b = this.queue[this.qHead]!;
      const crcs = this.queueLists[this.qHead];
      this.queue[this.qHead] = EMPTY;
      this.queueLists[this.qHead] = undefined;
      this.qHead++;
      if (this.qHead === this.queue.length) {
        this.queue.length = 0;
        this.queueLists.length = 0;
        this.qHead = 0;
      }
      if (b.length > 0) {
        this.buf = b;
        this.adoptList(b, crcs);
        this.off = 0;
        return true;
      }
    }
    this.buf = EMPTY;
    this.listBuf = undefined;
    this.off = 0;
    return false;
  }

  private advancePos(n: number): void {
    let lo = this.posLo + n;
    if (lo >= TWO32) {
      lo -= TWO32;
      this.posHi++;
    }
    this.posLo = lo;
  }

  /** Consumes up to `n` bytes across chunks; returns how many. */
  private consumeUpTo(n: number): number {
    let done = 0;
    while (done < n) {
      if (this.off === this.buf.length && !this.nextChunk()) break;
      const k = Math.min(n - done, this.buf.length - this.off);
      this.off += k;
      done += k;
    }
    this.buffered -= done;
    this.advancePos(done);
    return done;
  }

  /** Copies `n` bytes from the current position (across chunks) into `scratch`. */
  private gather(n: number): boolean {
    if (this.buffered < n) return false;
    let got = 0;
    let b = this.buf;
    let o = this.off;
    let qi = this.qHead;
    while (got < n) {
      if (o === b.length) {
        b = this.queue[qi++]!;
        o = 0;
        continue;
      }
      const k = Math.min(n - got, b.length - o);
      b.copy(this.scratch, got, o, o + k);
      got += k;
      o += k;
    }
    return true;
  }

  private get fmt(): WalFormat {
    return this.format ?? DEFAULT_WAL_FORMAT;
  }

  private pageHeader(): boolean {
    const fmt0 = this.format;
    const pageHi = this.posHi;
    const pageLo = this.posLo;
    // Fast path: a short header inside a segment, every field as expected. Anything else
    // takes the full path below, which names what is wrong.
    if (fmt0 !== undefined && this.segSizeKnown && (pageLo & (this.segSize - 1)) !== 0) {
      if (this.off === this.buf.length) this.nextChunk();
      const b = this.buf;
      const o = this.off;
      if (b.length - o >= 24) {
        const magic = b[o]! | (b[o + 1]! << 8);
        const info = b[o + 2]! | (b[o + 3]! << 8);
        const tli = (b[o + 4]! | (b[o + 5]! << 8) | (b[o + 6]! << 16) | (b[o + 7]! << 24)) >>> 0;
        const aLo = (b[o + 8]! | (b[o + 9]! << 8) | (b[o + 10]! << 16) | (b[o + 11]! << 24)) >>> 0;
        const aHi =
          (b[o + 12]! | (b[o + 13]! << 8) | (b[o + 14]! << 16) | (b[o + 15]! << 24)) >>> 0;
        const pi = fmt0.pageInfo;
        if (
          magic === fmt0.pageMagic &&
          (info & ~pi.all) === 0 &&
          (info & pi.longHeader) === 0 &&
          aLo === pageLo &&
          aHi === pageHi &&
          (this.tli === undefined || tli >= this.tli)
        ) {
          const remaining =
            (b[o + 16]! | (b[o + 17]! << 8) | (b[o + 18]! << 16) | (b[o + 19]! << 24)) >>> 0;
          this.tli = tli;
          this.pageHdr = 24;
          this.off = o + 24;
          this.buffered -= 24;
          this.advancePos(24);
          this.afterPageHeader(fmt0, info, remaining, 24, pageHi, pageLo);
          return true;
        }
      }
    }
    let hb: Buffer;
    let ho: number;
    if (this.off === this.buf.length) this.nextChunk();
    if (this.buf.length - this.off >= 40) {
      hb = this.buf;
      ho = this.off;
    } else {
      if (!this.gather(24)) return false;
      hb = this.scratch;
      ho = 0;
    }
    const pageLsn = lsnFromParts(this.posHi, this.posLo);
    const magic = hb.readUInt16LE(ho);
    let fmt = fmt0;
    if (fmt === undefined) {
      fmt = formatForMagic(magic);
      if (fmt === undefined) {
        const zero = hb.readUInt16LE(ho + 2) === 0 && hb.readBigUInt64LE(ho + 8) === 0n;
        throw new WalPageHeaderError(
          "bad-magic",
          pageLsn,
          `invalid magic number ${magic.toString(16).toUpperCase().padStart(4, "0")} in WAL segment ${segmentFileNameForLsn(1, pageLsn, this.segSize)}, LSN ${formatLsn(pageLsn)}, offset ${Number(pageLsn % BigInt(this.segSize))}: not a WAL page of PostgreSQL 15, 16, 17 or 18`,
          magic,
          undefined,
          { endOfWal: magic === 0 && zero },
        );
      }
    }
    const info = hb.readUInt16LE(ho + 2);
    const long = (info & fmt.pageInfo.longHeader) !== 0;
    if (long && hb === this.scratch) {
      if (!this.gather(40)) return false;
    }
    const h = parsePageHeader(hb, ho, fmt);
    if (
      long &&
      !this.segSizeKnown &&
      h.segmentSize !== undefined &&
      isValidSegmentSize(h.segmentSize)
    ) {
      if (pageLsn % BigInt(h.segmentSize) === 0n) {
        this.segSize = h.segmentSize;
        this.segSizeKnown = true;
      }
    }
    validatePageHeader(h, {
      pageLsn,
      format: fmt,
      segmentSize: this.segSize,
      pageSize: this.pageSize,
      timelineForNames: h.timeline === 0 ? (this.tli ?? 1) : h.timeline,
      expectedSystemId: this.expectedSystemId,
      previousTimeline: this.tli,
      segmentSizeKnown: this.segSizeKnown,
    });
    this.format = fmt;
    if (h.systemId !== undefined) this.sysId = h.systemId;
    this.tli = h.timeline;
    this.pageHdr = h.size;
    this.consumeUpTo(h.size);
    this.afterPageHeader(fmt, info, h.remainingLength, h.size, pageHi, pageLo);
    return true;
  }

  /** Sets the mode after the page header at `pageHi/pageLo` (`size` bytes) was consumed. */
  private afterPageHeader(
    fmt: WalFormat,
    info: number,
    remainingLength: number,
    size: number,
    pageHi: number,
    pageLo: number,
  ): void {
    const pi = fmt.pageInfo;
    const pageLsn = () => lsnFromParts(pageHi, pageLo);
    switch (this.hdrCtx) {
      case CTX_START:
        if (info & pi.firstIsContrecord) {
          const at = lsnFromParts(this.posHi, this.posLo);
          throw new WalDecodeError(
            "unexpected-contrecord",
            at,
            `contrecord is requested by ${formatLsn(at)}: the page at ${formatLsn(pageLsn())} says it continues a record (${remainingLength} bytes left) where a new record must start`,
          );
        }
        this.mode = M_RECORD;
        break;
      case CTX_CONT: {
        const recLsn = () => lsnFromParts(this.recHi, this.recLo);
        if (info & pi.firstIsOverwriteContrecord) {
          // The rest of this record was never written; a new record starts here instead.
          this.abandoned.push(recLsn());
          this.overwrittenHi = this.recHi;
          this.overwrittenLo = this.recLo;
          this.mode = M_RECORD;
          break;
        }
        if (!(info & pi.firstIsContrecord)) {
          throw new WalDecodeError(
            "missing-contrecord",
            pageLsn(),
            `there is no contrecord flag at ${formatLsn(pageLsn())}: the record at ${formatLsn(recLsn())} needs ${this.asmTot - this.asmLen} more bytes`,
            { recordLsn: recLsn() },
          );
        }
        const want = this.asmTot - this.asmLen;
        if (remainingLength === 0 || remainingLength !== want) {
          throw new WalDecodeError(
            "missing-contrecord",
            pageLsn(),
            `invalid contrecord length ${remainingLength} (expected ${want}) at ${formatLsn(pageLsn())} for the record at ${formatLsn(recLsn())}`,
            { recordLsn: recLsn() },
          );
        }
        this.mode = M_CONT;
        break;
      }
      default: {
        // First page read: skip the tail of a record that started before startLsn.
        if (info & pi.firstIsContrecord) {
          const skip = (remainingLength + 7) & ~7;
          const room = this.pageSize - size;
          this.mode = M_SKIP;
          if (skip >= room) {
            this.skipLeft = room;
            this.afterSkip = M_PAGE_HEADER;
            this.afterSkipCtx = CTX_INITIAL;
            this.skippedContinuation += room;
          } else {
            this.skipLeft = skip;
            this.afterSkip = M_RECORD;
            this.afterSkipCtx = CTX_START;
            this.skippedContinuation += skip;
          }
        } else {
          this.mode = M_RECORD;
        }
      }
    }
  }

  private maxRecordSize(): number {
    const v = this.fmt.maxRecordSize;
    return this.maxRecordSizeOption === undefined ? v : Math.min(v, this.maxRecordSizeOption);
  }

  /** At a record start. Returns the record, `undefined` to loop, `null` when starved. */
  private recordStart(): WalRecord | undefined | null {
    const pageOff = this.posLo & this.pageMask;
    const minOff =
      this.pageHdr !== 0
        ? this.pageHdr
        : this.segSizeKnown && (this.posLo & (this.segSize - 1)) < this.pageSize
          ? 40
          : 24;
    if (pageOff < minOff) {
      const at = this.position;
      throw new WalDecodeError(
        "bad-record-offset",
        at,
        `invalid record offset at ${formatLsn(at)}: expected at least ${minOff}, got ${pageOff}`,
      );
    }
    const buf = this.buf;
    const off = this.off;
    const avail = buf.length - off;
    let totLen: number;
    if (avail >= 4)
      totLen =
        (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
    else if (this.gather(4)) totLen = this.scratch.readUInt32LE(0);
    else return null;
    if (totLen < RECORD_HEADER_SIZE) {
      const at = this.position;
      throw new WalRecordLengthError(
        at,
        totLen,
        `invalid record length at ${formatLsn(at)}: expected at least ${RECORD_HEADER_SIZE}, got ${totLen}`,
        { endOfWal: totLen === 0 },
      );
    }
    const pageRemain = this.pageSize - pageOff;
    if (totLen <= pageRemain && totLen <= avail) {
      // Fast path: the whole record is in this chunk and on this page; decode it in place.
      const hi = this.posHi;
      const lo = this.posLo;
      this.checkHeader(buf, off, hi, lo);
      if (this.verifyCrc) {
        // A batch only pays off for a chunk of many records (not a decoder made for one); a
        // chunk already listed is used to its end.
        if (
          this.native !== undefined &&
          (avail >= LIST_MIN_BYTES || (buf === this.listBuf && off < this.listEnd))
        )
          this.checkListedCrc(this.native, buf, off, hi, lo);
        else this.checkCrc(buf, off, totLen, hi, lo);
      }
      const rec = this.rec;
      rec.lsnHi = hi;
      rec.lsnLo = lo;
      this.decode(rec, buf, off);
      const aligned = (totLen + 7) & ~7;
      const k = Math.min(aligned, avail);
      this.off = off + k;
      this.buffered -= k;
      this.advancePos(k);
      return this.finishRecord(aligned - k);
    }
    if (totLen > this.maxRecordSize()) {
      const at = this.position;
      throw new WalRecordLengthError(
        at,
        totLen,
        `record length ${totLen} at ${formatLsn(at)} too long: at most ${this.maxRecordSize()} bytes are possible`,
      );
    }
    // Slow path: assemble the record from several pages and/or chunks.
    if (this.asm.length > 16 * 1024 * 1024 && totLen < this.asm.length / 4) this.asm = EMPTY;
    // A record continued on later pages of this chunk may have had its CRC listed.
    this.asmListed = this.verifyCrc && this.native !== undefined && this.listedCrc(buf, off);
    this.recHi = this.posHi;
    this.recLo = this.posLo;
    this.asmTot = totLen;
    this.asmLen = 0;
    this.asmChecked = false;
    if (pageRemain >= RECORD_HEADER_SIZE) {
      // The header is on this page: check it before trusting the length.
      let hb = buf;
      let ho = off;
      if (avail < RECORD_HEADER_SIZE) {
        if (!this.gather(RECORD_HEADER_SIZE)) return null;
        hb = this.scratch;
        ho = 0;
      }
      this.checkHeader(hb, ho, this.recHi, this.recLo);
      this.asmChecked = true;
    }
    this.mode = M_CONT;
    return undefined;
  }

  private continueRecord(): WalRecord | undefined {
    const pageOff = this.posLo & this.pageMask;
    const n = Math.min(
      this.pageSize - pageOff,
      this.asmTot - this.asmLen,
      this.buf.length - this.off,
    );
    const need = this.asmLen + n;
    if (this.asm.length < need) {
      // Grow with the bytes actually received, never to a claimed length up front.
      const size = Math.min(this.asmTot, Math.max(need, this.asm.length * 2, 4 * this.pageSize));
      const bigger = Buffer.allocUnsafe(size);
      this.asm.copy(bigger, 0, 0, this.asmLen);
      this.asm = bigger;
    }
    this.buf.copy(this.asm, this.asmLen, this.off, this.off + n);
    this.off += n;
    this.buffered -= n;
    this.advancePos(n);
    this.asmLen += n;
    if (!this.asmChecked && this.asmLen >= RECORD_HEADER_SIZE) {
      this.checkHeader(this.asm, 0, this.recHi, this.recLo);
      this.asmChecked = true;
    }
    if (this.asmLen < this.asmTot) return undefined;
    const hi = this.recHi;
    const lo = this.recLo;
    if (this.asmListed) {
      const stored = storedCrc(this.asm, 0);
      if (this.asmCrc !== stored) {
        throw new WalCrcMismatchError(lsnFromParts(hi, lo), stored, this.asmCrc);
      }
    } else if (this.verifyCrc) this.checkCrc(this.asm, 0, this.asmTot, hi, lo);
    const rec = this.rec;
    rec.lsnHi = hi;
    rec.lsnLo = lo;
    this.decode(rec, this.asm, 0);
    const pad = (8 - (this.posLo & 7)) & 7;
    const k = this.consumeUpTo(pad);
    this.mode = M_RECORD;
    return this.finishRecord(pad - k);
  }

  /** After a record: set its end, handle XLOG_SWITCH and overwrite checks; `padLeft` bytes of
   * alignment padding are still to be skipped. */
  private finishRecord(padLeft: number): WalRecord {
    const rec = this.rec;
    const fmt = this.fmt;
    if (this.overwrittenHi >= 0) {
      const expectHi = this.overwrittenHi;
      const expectLo = this.overwrittenLo;
      this.overwrittenHi = -1;
      const md = rec.mainDataLen >= 8 ? rec.mainData() : undefined;
      if (
        rec.rmid !== fmt.rmXlogId ||
        (rec.info & 0xf0) !== fmt.xlogOverwriteContrecordInfo ||
        md === undefined ||
        md.readUInt32LE(0) !== expectLo ||
        md.readUInt32LE(4) !== expectHi
      ) {
        const at = rec.lsn;
        throw new WalDecodeError(
          "bad-overwrite-contrecord",
          at,
          `the partial record at ${formatLsnParts(expectHi, expectLo)} was abandoned (FIRST_IS_OVERWRITE_CONTRECORD), but the record at ${formatLsn(at)} is not the XLOG_OVERWRITE_CONTRECORD for it (rmid ${rec.rmid}, info 0x${rec.info.toString(16)})`,
          { recordLsn: at },
        );
      }
    }
    // End position (EndRecPtr): right after the aligned record.
    let endLo = this.posLo + padLeft;
    let endHi = this.posHi;
    if (endLo >= TWO32) {
      endLo -= TWO32;
      endHi++;
    }
    let skip = padLeft;
    if (rec.rmid === fmt.rmXlogId && (rec.info & 0xf0) === fmt.xlogSwitchInfo) {
      // XLOG_SWITCH: the rest of the segment is padding.
      const segOff = endLo & (this.segSize - 1);
      if (segOff !== 0) {
        const rest = this.segSize - segOff;
        skip += rest;
        endLo += rest;
        if (endLo >= TWO32) {
          endLo -= TWO32;
          endHi++;
        }
      }
    }
    rec.endHi = endHi;
    rec.endLo = endLo;
    this.endHi = endHi;
    this.endLo = endLo;
    this.prevHi = rec.lsnHi;
    this.prevLo = rec.lsnLo;
    if (skip > 0) {
      this.skipLeft = skip;
      this.mode = M_SKIP;
      this.afterSkip = M_RECORD;
      this.afterSkipCtx = CTX_START;
    } else {
      this.mode = M_RECORD;
    }
    return rec;
  }

  private checkHeader(b: Buffer, o: number, hi: number, lo: number): void {
    const rmid = b[o + 17]!;
    if (rmid > this.fmt.maxBuiltinRmgrId && rmid < 128) {
      const at = lsnFromParts(hi, lo);
      throw new WalDecodeError(
        "bad-rmgr",
        at,
        `invalid resource manager ID ${rmid} at ${formatLsn(at)}: expected 0..${this.fmt.maxBuiltinRmgrId} or a custom 128..255`,
        { recordLsn: at },
      );
    }
    const pLo = (b[o + 8]! | (b[o + 9]! << 8) | (b[o + 10]! << 16) | (b[o + 11]! << 24)) >>> 0;
    const pHi = (b[o + 12]! | (b[o + 13]! << 8) | (b[o + 14]! << 16) | (b[o + 15]! << 24)) >>> 0;
    if (this.prevHi < 0) {
      if (!(pHi < hi || (pHi === hi && pLo < lo))) {
        const at = lsnFromParts(hi, lo);
        throw new WalDecodeError(
          "bad-prev-link",
          at,
          `record with incorrect prev-link ${formatLsnParts(pHi, pLo)} at ${formatLsn(at)}: expected an earlier LSN`,
          { recordLsn: at },
        );
      }
    } else if (pHi !== this.prevHi || pLo !== this.prevLo) {
      const at = lsnFromParts(hi, lo);
      throw new WalDecodeError(
        "bad-prev-link",
        at,
        `record with incorrect prev-link ${formatLsnParts(pHi, pLo)} at ${formatLsn(at)}: expected ${formatLsnParts(this.prevHi, this.prevLo)}`,
        { recordLsn: at },
      );
    }
  }

  private decode(rec: WalRecord, b: Buffer, o: number): void {
    const fmt = this.fmt;
    // The lean scan declines anything it would reject; the full decode then names the error.
    if (this.decodeBlocks || !scanRecordInto(rec, b, o, fmt, this.blockSize)) {
      decodeRecordInto(rec, b, o, fmt, this.blockSize);
    }
  }

  /**
   * Whether the current list names a record at `off` of `buf` (sets `asmCrc` to its CRC): for
   * a record continued on later pages, whose CRC the list has over its assembled bytes.
   */
  private listedCrc(buf: Buffer, off: number): boolean {
    if (buf !== this.listBuf || off >= this.listEnd) return false;
    const i = this.listIndex(off);
    if (i < 0) return false;
    this.asmCrc = this.listOut[i]! >>> 0;
    return true;
  }

  /** The index in the current list of the record at `off` (moving `listAt` on), or -1. */
  private listIndex(off: number): number {
    const offs = this.listOffs;
    const n = this.listN;
    let i = this.listAt;
    while (i < n && offs[i]! < off) i++;
    this.listAt = i;
    return i < n && offs[i] === off ? i : -1;
  }

  /**
   * The CRC check of a record lying whole in the current chunk at `off`, with the native addon:
   * the first such record of a chunk lists the records after it (see {@link listRecords}) and
   * has their CRCs computed in one call; the records then find theirs in the list. The list is
   * only a guess at where records start: a record it does not name is checked alone (and the
   * rest of the chunk listed again from the next one).
   */
  private checkListedCrc(
    native: NativeCrc,
    buf: Buffer,
    off: number,
    hi: number,
    lo: number,
  ): void {
    if (buf !== this.listBuf || off >= this.listEnd) this.listRecords(native, buf, off, lo);
    const i = this.listIndex(off);
    let actual: number;
    if (i >= 0) {
      actual = this.listOut[i]! >>> 0;
    } else {
      actual = native.recordCrc(buf, off);
      this.listBuf = undefined;
    }
    const stored = storedCrc(buf, off);
    if (actual !== stored) throw new WalCrcMismatchError(lsnFromParts(hi, lo), stored, actual);
  }

  /**
   * Lists where the records of `buf` from `off` on (a record start, at an LSN whose low 32 bits
   * are `lo`) should start, by following the length fields and the page headers, and has their
   * CRCs computed, all in one native call (`listRecordCrcs`). A record continued on later
   * pages is listed with the CRC of its bytes as they are assembled (after the page headers)
   * when all of it lies in `buf`; the walk stops at anything unexpected (a length below 24, a
   * page without the expected magic, the end of the chunk). Nothing here is trusted: a record
   * only uses a CRC computed for exactly its offset, over exactly its bytes.
   */
  private listRecords(native: NativeCrc, buf: Buffer, off: number, lo: number): void {
    // Sized to what the chunk can hold (a decoder made for one record lists one), at most
    // CRC_BATCH records a call.
    const room = Math.min(CRC_BATCH, Math.floor((buf.length - off) / RECORD_HEADER_SIZE) + 1);
    if (this.ownOffs.length < room) {
      this.ownOffs = new Int32Array(room);
      this.ownOut = new Int32Array(room);
    }
    this.listOffs = this.ownOffs;
    this.listOut = this.ownOut;
    const fmt = this.fmt;
    const result = this.listResult;
    native.listRecordCrcs(
      buf,
      off,
      lo,
      this.pageSize,
      fmt.pageMagic,
      fmt.pageInfo.longHeader,
      fmt.pageInfo.firstIsContrecord,
      this.listOffs,
      this.listOut,
      result,
    );
    this.listBuf = buf;
    this.listN = result[0]!;
    this.listAt = 0;
    this.listEnd = result[1]!;
  }

  private checkCrc(b: Buffer, o: number, totLen: number, hi: number, lo: number): void {
    const actual = this.computeCrc(b, o, totLen);
    const stored = storedCrc(b, o);
    if (actual !== stored) throw new WalCrcMismatchError(lsnFromParts(hi, lo), stored, actual);
  }

  /** The CRC-32C of the record at `o` of `b` (its xl_tot_len is `totLen`), computed alone. */
  private computeCrc(b: Buffer, o: number, totLen: number): number {
    // One native call costs less than the JavaScript loop for all but the shortest records.
    if (this.native !== undefined && totLen >= 24 + 16) return this.native.recordCrc(b, o);
    if (b !== this.crcBuf) {
      // Two views are kept: records alternate between the input chunk and `asm`.
      const otherBuf = this.crcBuf;
      const otherWords = this.crcWords;
      if (b === this.crcBuf2) {
        this.crcWords = this.crcWords2;
      } else {
        this.crcWords = crcWordView(b);
      }
      this.crcBuf = b;
      this.crcBuf2 = otherBuf;
      this.crcWords2 = otherWords;
    }
    return recordCrc32cIn(b, this.crcWords, o, totLen);
  }
}

/** The `xl_crc` stored in the header of the record at `o`. */
function storedCrc(b: Buffer, o: number): number {
  return (b[o + 20]! | (b[o + 21]! << 8) | (b[o + 22]! << 16) | (b[o + 23]! << 24)) >>> 0;
}
