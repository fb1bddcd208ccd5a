/**
 * The counting core of `tideline waldump --stats`: decode a range of segment files and add up
 * records per resource manager. Runs on the main thread (one range covering everything: the
 * sequential run) and in worker threads (one range each of several), so it imports only the
 * decoder.
 *
 * A range starts at its first segment's start (or `--start`'s page) and owns exactly the
 * records that start before the next range's first segment; it reads on into later files to
 * finish the record that spans its end, then decodes one more record, the *sentinel*: the first
 * record of the next range, decoded with the state the sequential run would have there. The
 * next range's result is only used when the first record it decoded is that sentinel; see
 * {@link combineRanges}.
 *
 * @module
 */
import { newRecordTally, WalDecoder } from "../../../wal/decoder.js";
import { WalDecodeError } from "../../../wal/errors.js";
import type { Lsn } from "../../../wal/lsn.js";
import { ChunkReader } from "./waldump_reader.js";

/** What every range of one `--stats` run shares. */
export interface StatsJob {
  /** The segment files, in order, from the first one read. */
  readonly files: readonly { readonly path: string; readonly size: number }[];
  readonly segmentSize: number;
  /** The ranges: each starts at `files[file]`, at byte `offset` of it (0 but for the first). */
  readonly ranges: readonly StatsRange[];
  /** `--start`: records before it are decoded but not counted. */
  readonly start?: Lsn | undefined;
  /** `--end`: decoding stops at the first counted record ending after it. */
  readonly end?: Lsn | undefined;
  /**
   * Read (and checksum, with the addon) ahead on libuv's thread pool while decoding (default
   * true); false reads each chunk when it is needed, on the decoding thread: for when every
   * core decodes.
   */
  readonly readAhead?: boolean | undefined;
  /**
   * Count with the decoder's {@link WalDecoder.tally} where it can (default true; false counts
   * every record from `next()`, the same numbers more slowly: for tests that compare the two).
   */
  readonly tally?: boolean | undefined;
}

/** One range of a {@link StatsJob}. */
export interface StatsRange {
  /** Index in `files` of its first segment. */
  readonly file: number;
  /** Byte offset in that file where decoding starts (a page start). */
  readonly offset: number;
  /** The LSN of that byte. */
  readonly startLsn: Lsn;
  /** Where the next range starts; `undefined` for the last range. */
  readonly endLsn: Lsn | undefined;
}

/** How a range's decoding stopped. */
export type RangeStop =
  /** Decoded the next range's first record (`sentinel`): the range is complete. */
  | "sentinel"
  /** The input ended cleanly at a record boundary. */
  | "input-end"
  /** A record ended after `--end`. */
  | "end-option"
  /** `error` says why. */
  | "error"
  /** Given up because an earlier range already stopped the run. */
  | "aborted";

/** What decoding one range found. */
export interface RangeResult {
  readonly range: number;
  stop: RangeStop;
  /** The major version named by the first page header read. */
  majorVersion: number | undefined;
  /** Records counted. */
  count: number;
  /** Per resource manager id: record count at `[id]`, record bytes at `[256 + id]`, FPI bytes at `[512 + id]`. */
  readonly sums: Float64Array;
  /** The first counted record's LSN and the last one's end. */
  firstLsn: Lsn | undefined;
  lastEnd: Lsn | undefined;
  /** The first record decoded (counted or not, owned or not). */
  firstDecoded: Lsn | undefined;
  /** With `stop` "sentinel": the LSN of the first record at or after `endLsn`. */
  sentinel: Lsn | undefined;
  /** With `stop` "error". */
  error: ScanError | undefined;
}

/** An error that ended a range, in a form that crosses threads. */
export interface ScanError {
  /** `decode`: a WalDecodeError; `usage`: a RangeError or TypeError (bad input). */
  readonly kind: "decode" | "usage";
  readonly message: string;
  readonly endOfWal: boolean;
}

/** Ranges are cut at multiples of this many bytes (or of the segment size, when smaller). */
export const RANGE_UNIT = 4 << 20;

/**
 * Cuts `files` segment files (decoding starts at byte `offset` of the first, at `startLsn`)
 * into at most `count` contiguous ranges, cut at multiples of {@link RANGE_UNIT} (or of the
 * segment size when smaller): page starts, where a range's decoder can begin.
 *
 * @example
 * ```ts
 * splitRanges(42, 16 << 20, 0x1000000n, 0, 8).length; // 8
 * ```
 */
export function splitRanges(
  files: number,
  segmentSize: number,
  startLsn: Lsn,
  offset: number,
  count: number,
): StatsRange[] {
  const unit = Math.min(segmentSize, RANGE_UNIT);
  const perFile = segmentSize / unit;
  const firstUnit = Math.floor(offset / unit) + 1; // the first cut after startLsn
  const units = files * perFile;
  const n = Math.max(1, Math.min(count, units - firstUnit + 1));
  const base = startLsn - BigInt(offset);
  const cuts: number[] = [];
  for (let i = 1; i < n; i++) {
    const u = firstUnit + Math.floor((i * (units - firstUnit)) / n);
    if (u > (cuts[cuts.length - 1] ?? 0) && u < units) cuts.push(u);
  }
  const ranges: StatsRange[] = [];
  for (let i = 0; i <= cuts.length; i++) {
    const u = i === 0 ? undefined : cuts[i - 1]!;
    const next = cuts[i];
    ranges.push({
      file: u === undefined ? 0 : Math.floor(u / perFile),
      offset: u === undefined ? offset : (u % perFile) * unit,
      startLsn: u === undefined ? startLsn : base + BigInt(u) * BigInt(unit),
      endLsn: next === undefined ? undefined : base + BigInt(next) * BigInt(unit),
    });
  }
  return ranges;
}

/**
 * Bytes read at a time on the decoding thread (multiples of every page size, as below): small
 * enough for the decoder to find them in the core's own cache. On the benchmark with the
 * CRCs in JavaScript, 0.458 s against 0.508 s with 4 MiB; two threads with the addon 0.311 s
 * against 0.361 s.
 */
export const SCAN_CHUNK = 1 << 20;

/**
 * Bytes read at a time on the thread pool (reading ahead). Each chunk costs a turn of the
 * event loop (~50 us) to hand over: 4 MiB measured 0.276 s against 0.300 s with 1 MiB on the
 * benchmark; the four held (one decoded, three read ahead) fit a 32 MiB L3 cache.
 */
export const READ_AHEAD_CHUNK = 4 << 20;

/**
 * Chunks read (or being read) on the thread pool beyond the one being decoded, when a core is
 * left for it (`StatsJob.readAhead`).
 */
const READ_AHEAD = 3;

/**
 * Decodes range `index` of `job` and counts its records. `shouldStop()` is asked between chunks:
 * when it returns true the range is given up (`stop` "aborted"). `free` holds buffers of
 * buffers to read into (the range takes those of its chunk size, and puts back those it leaves unused
 * when it ends), saving allocations across ranges. Rejects only when a file cannot be read.
 *
 * @example
 * ```ts
 * const r = await scanStatsRange(job, 0);
 * console.log(r.count, r.stop);
 * ```
 */
export async function scanStatsRange(
  job: StatsJob,
  index: number,
  shouldStop: () => boolean = () => false,
  free: Buffer[] = [],
): Promise<RangeResult> {
  const range = job.ranges[index]!;
  const result: RangeResult = {
    range: index,
    stop: "input-end",
    majorVersion: undefined,
    count: 0,
    sums: new Float64Array(768),
    firstLsn: undefined,
    lastEnd: undefined,
    firstDecoded: undefined,
    sentinel: undefined,
    error: undefined,
  };
  const { start, end } = job;
  const last = range.endLsn === undefined;
  const reHi = last ? 0 : Number(range.endLsn >> 32n);
  const reLo = last ? 0 : Number(range.endLsn & 0xffff_ffffn);
  const dec = new WalDecoder({
    startLsn: range.startLsn,
    segmentSize: job.segmentSize,
    decodeBlocks: false,
  });
  // Records are counted by the decoder's tally where it can, and here one by one where it
  // leaves them to next(). The tally holds the end of the last record counted either way.
  const tally = newRecordTally();
  const sums = tally.sums;
  const fast = job.tally !== false && end === undefined;
  let firstHi = -1;
  let firstLo = 0;

  /** Decodes what is buffered; false once the range is complete. */
  const drain = (): boolean => {
    for (;;) {
      // Once counting has begun, every later record is past --start.
      if (fast && tally.records > 0) dec.tally(tally, range.endLsn);
      const rec = dec.next();
      if (rec === undefined) return true;
      const hi = rec.lsnHi;
      const lo = rec.lsnLo;
      if (result.firstDecoded === undefined) result.firstDecoded = rec.lsn;
      if (!last && (hi > reHi || (hi === reHi && lo >= reLo))) {
        result.sentinel = rec.lsn;
        result.stop = "sentinel";
        return false;
      }
      if (start !== undefined && rec.lsn < start) continue;
      if (end !== undefined && rec.end > end) {
        result.stop = "end-option";
        return false;
      }
      const id = rec.rmid;
      const fpi = rec.fpiLen;
      sums[id]!++;
      sums[256 + id]! += rec.totLen - fpi;
      sums[512 + id]! += fpi;
      tally.records++;
      if (firstHi < 0) {
        firstHi = hi;
        firstLo = lo;
      }
      tally.endHi = rec.endHi;
      tally.endLo = rec.endLo;
    }
  };

  const ahead = job.readAhead === false ? 0 : READ_AHEAD;
  const chunkSize = ahead > 0 ? READ_AHEAD_CHUNK : SCAN_CHUNK;
  const reader = new ChunkReader(job.files, range.file, range.offset, chunkSize, ahead, free);
  try {
    let done = false;
    for (let c = await reader.next(); c !== undefined; c = await reader.next()) {
      if (shouldStop()) {
        result.stop = "aborted";
        done = true;
        break;
      }
      if (c.bytes.length > 0) dec.push(c.bytes, c.crcs);
      if (!drain()) {
        done = true;
        break;
      }
      // The decoder keeps a reference to what it has not consumed: reuse the buffer only
      // when it holds none of it (always, with page-aligned chunks; but never assume).
      if (dec.bufferedBytes === 0) reader.recycle(c);
    }
    if (!done) {
      dec.end();
      drain();
    }
  } catch (error) {
    if (error instanceof WalDecodeError) {
      result.stop = "error";
      result.error = { kind: "decode", message: error.message, endOfWal: error.endOfWal };
    } else if (error instanceof RangeError || error instanceof TypeError) {
      result.stop = "error";
      result.error = { kind: "usage", message: error.message, endOfWal: false };
    } else throw error;
  } finally {
    await reader.close();
  }
  result.majorVersion = dec.majorVersion;
  result.count = tally.records;
  result.sums.set(sums);
  if (firstHi >= 0) {
    result.firstLsn = (BigInt(firstHi) << 32n) | BigInt(firstLo);
    result.lastEnd = (BigInt(tally.endHi) << 32n) | BigInt(tally.endLo);
  }
  return result;
}

/** The whole run's outcome, as the sequential run would have it. */
export interface CombinedStats {
  majorVersion: number | undefined;
  count: number;
  readonly sums: Float64Array;
  firstLsn: Lsn | undefined;
  lastEnd: Lsn | undefined;
  /** How the run stopped ("sentinel" never: the last range has none). */
  stop: Exclude<RangeStop, "sentinel" | "aborted">;
  error: ScanError | undefined;
}

/**
 * Adds up range results in order, as one sequential run would have counted: up to and
 * including the first range that stopped (an error, `--end`, the end of the input); later
 * ranges are dropped. Returns `undefined` when a range does not begin exactly where the one
 * before left off (its first record is not that range's sentinel): then only a sequential run
 * knows what happens there.
 *
 * @example
 * ```ts
 * const all = combineRanges(results) ?? combineRanges([scanStatsRange(sequentialJob, 0)])!;
 * ```
 */
export function combineRanges(
  results: readonly (RangeResult | undefined)[],
): CombinedStats | undefined {
  const out: CombinedStats = {
    majorVersion: results[0]?.majorVersion,
    count: 0,
    sums: new Float64Array(768),
    firstLsn: undefined,
    lastEnd: undefined,
    stop: "input-end",
    error: undefined,
  };
  let sentinel: Lsn | undefined;
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (r === undefined || r.range !== i || r.stop === "aborted") return undefined;
    if (i > 0 && r.firstDecoded !== sentinel) return undefined;
    out.count += r.count;
    for (let k = 0; k < 768; k++) out.sums[k]! += r.sums[k]!;
    if (r.firstLsn !== undefined) {
      out.firstLsn ??= r.firstLsn;
      out.lastEnd = r.lastEnd;
    }
    if (r.stop !== "sentinel") {
      out.stop = r.stop;
      out.error = r.error;
      return out;
    }
    sentinel = r.sentinel;
  }
  // The last range has no end, so it never stops at a sentinel.
  return undefined;
}
