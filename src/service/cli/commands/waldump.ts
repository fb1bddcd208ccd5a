/**
 * `tideline waldump`: decode WAL segment files and print their records, in
 * pg_waldump's shape, as JSON lines, or as pg_waldump's `--stats` table.
 *
 * @module
 */
import { closeSync, openSync, readSync } from "node:fs";
import { availableParallelism } from "node:os";
import { type Command, InvalidArgumentError } from "commander";
// The wal modules one by one, not wal/index.js: a command line starts faster without the
// replication protocol and everything else it does not use.
import { WalDecoder } from "../../../wal/decoder.js";
import { formatRecordLine, recordToJson, WalStats } from "../../../wal/dump.js";
import { WalDecodeError } from "../../../wal/errors.js";
import { formatLsn, type Lsn } from "../../../wal/lsn.js";
import { nativeCrc } from "../../../wal/native.js";
import type { WalRecord } from "../../../wal/record.js";
import { checkVersion, type SupportedVersion } from "../../../wal/rmgr/versions.js";
import { pageStart, segmentNumber, segmentOffset, segmentStartLsn } from "../../../wal/segment.js";
import { listWalSegments, WalFilesError } from "../../../wal/wal_files.js";
import { lsnOption, timelineOption } from "./options.js";
import { BufferedOutput } from "./output.js";
import {
  type CombinedStats,
  type RangeResult,
  SCAN_CHUNK,
  type StatsJob,
  scanStatsRange,
  splitRanges,
} from "./waldump_scan.js";

/** Options of {@linkcode runWaldump}. */
export interface WaldumpOptions {
  json?: boolean;
  stats?: boolean;
  start?: Lsn;
  end?: Lsn;
  timeline?: number;
  /**
   * Threads decoding `--stats` (default: {@link defaultStatsThreads}, and 1 below 64 MiB of
   * WAL).
   * Every thread decodes whole ranges of segments; the numbers, the end and the errors are
   * those of one sequential run.
   */
  jobs?: number;
}

/**
 * Decoding threads for `--stats` on a machine with `cpus` CPUs. With the native addon (`native`),
 * two for every three CPUs (one with two), at most 8: each decoding thread keeps about half of
 * another core busy reading and checksumming ahead of it on libuv's thread pool, and a worker
 * takes ~60 ms to start (on two cores, one thread measured 0.28-0.29 s against 0.43-0.47 s
 * with two, for 672 MiB). Without it the CRCs are computed by the decoding threads in
 * JavaScript, which makes more threads pay: one per CPU, at most 8.
 *
 * @example
 * ```ts
 * defaultStatsThreads(2, true); // 1
 * defaultStatsThreads(8, true); // 5
 * defaultStatsThreads(2, false); // 2
 * ```
 */
export function defaultStatsThreads(cpus: number, native: boolean): number {
  const n = native ? Math.floor((cpus * 2) / 3) : cpus;
  return Math.max(1, Math.min(8, n));
}

/** Below this much WAL, starting threads costs more than it saves. */
const PARALLEL_MIN_BYTES = 64 << 20;
/** Ranges per thread: taken in order as threads become free, so that all finish together. */
const RANGES_PER_THREAD = 32;

/**
 * Runs `tideline waldump` and returns the exit code: 0 when the WAL was read to its end
 * (or to `--end`), 1 when it is damaged or the files do not form one stream, 2 for bad
 * usage. Records go to `stdout`; the reason decoding stopped goes to `stderr`.
 *
 * @example
 * ```ts
 * import { runWaldump } from "./waldump.js";
 * process.exitCode = await runWaldump(["/var/lib/postgresql/15/main/pg_wal"], { stats: true });
 * ```
 */
export async function runWaldump(
  paths: readonly string[],
  options: WaldumpOptions,
  fds: { stdout: number; stderr: number } = { stdout: 1, stderr: 2 },
): Promise<number> {
  const out = new BufferedOutput(fds.stdout);
  const err = new BufferedOutput(fds.stderr);
  const say = (message: string) => {
    err.line(`tideline waldump: ${message}`);
    err.flush();
  };
  if (options.start !== undefined && options.end !== undefined && options.end <= options.start) {
    say(`--end ${formatLsn(options.end)} must be after --start ${formatLsn(options.start)}`);
    return 2;
  }
  let list: ReturnType<typeof listWalSegments>;
  try {
    list = listWalSegments(
      paths,
      options.timeline === undefined ? {} : { timeline: options.timeline },
    );
  } catch (error) {
    if (error instanceof WalFilesError || error instanceof RangeError) {
      say(error.message);
      return 1;
    }
    throw error;
  }
  const { segmentSize } = list;
  let files = list.files;
  const first = files[0]!;
  let startLsn = segmentStartLsn(first.segno, segmentSize);
  let fileOffset = 0;
  if (options.start !== undefined) {
    const segno = segmentNumber(options.start, segmentSize);
    const index = files.findIndex((f) => f.segno === segno);
    if (index < 0) {
      say(
        `--start ${formatLsn(options.start)} is not in the WAL files given (segments ${first.name} .. ${files[files.length - 1]!.name})`,
      );
      return 1;
    }
    files = files.slice(index);
    startLsn = pageStart(options.start);
    fileOffset = segmentOffset(startLsn, segmentSize);
  }

  if (options.stats) {
    const cpus = availableParallelism();
    const job: StatsJob = {
      files,
      segmentSize,
      ranges: splitRanges(files.length, segmentSize, startLsn, fileOffset, 1),
      start: options.start,
      end: options.end,
      // Reads on the thread pool need a core of their own.
      readAhead: cpus > 1,
    };
    let threads = options.jobs ?? defaultStatsThreads(cpus, nativeCrc() !== undefined);
    if (options.jobs === undefined) {
      const bytes = files.reduce((n, f) => n + f.size, 0) - fileOffset;
      if (bytes < PARALLEL_MIN_BYTES) threads = 1;
    }
    threads = Math.min(threads, files.length);
    let combined: CombinedStats | undefined;
    if (threads > 1) {
      // Loaded only here: worker threads are not needed for one.
      const { runParallelStats } = await import("./waldump_parallel.js");
      const ranges = splitRanges(
        files.length,
        segmentSize,
        startLsn,
        fileOffset,
        threads * RANGES_PER_THREAD,
      );
      combined = await runParallelStats({ ...job, ranges, readAhead: threads < cpus }, threads);
      // For tests: show that the ranges were used, or that a sequential run had to decide.
      if (process.env.TIDELINE_WALDUMP_TRACE === "1") {
        say(
          `${threads} threads, ${ranges.length} ranges: ${combined === undefined ? "ranges did not join up, decoding sequentially" : "ranges joined up"}`,
        );
      }
    }
    // One range over everything: the sequential run (also when the ranges did not join up).
    combined ??= combineFinal(await scanStatsRange(job, 0));
    return reportStats(combined, options, out, say);
  }

  const decoder = new WalDecoder({ startLsn, segmentSize });
  let version: SupportedVersion | undefined;
  let printed = 0;
  let reachedEnd = false;
  let announcedSkip = options.start === undefined;

  const emit = (rec: WalRecord): boolean => {
    if (options.start !== undefined && rec.lsn < options.start) return true;
    if (options.end !== undefined && rec.end > options.end) {
      reachedEnd = true;
      return false;
    }
    if (!announcedSkip && options.start !== undefined) {
      announcedSkip = true;
      if (rec.lsn !== options.start) {
        say(
          `first record is after ${formatLsn(options.start)}, at ${formatLsn(rec.lsn)}, skipping over ${rec.lsn - options.start} bytes`,
        );
      }
    }
    if (version === undefined) version = checkVersion(decoder.majorVersion);
    if (options.json) {
      out.line(JSON.stringify(recordToJson(rec, version)));
    } else {
      out.line(formatRecordLine(rec, version));
    }
    printed++;
    return !out.closed;
  };

  const drain = (): boolean => {
    for (let rec = decoder.next(); rec !== undefined; rec = decoder.next()) {
      if (!emit(rec)) return false;
    }
    return true;
  };

  let chunk = Buffer.allocUnsafeSlow(SCAN_CHUNK);
  let failure: unknown;
  try {
    outer: for (const file of files) {
      const fd = openSync(file.path, "r");
      try {
        for (let pos = fileOffset; pos < file.size; pos += SCAN_CHUNK) {
          // Reuse the buffer once the decoder has let go of it (records are printed by then).
          if (decoder.bufferedBytes !== 0) chunk = Buffer.allocUnsafeSlow(SCAN_CHUNK);
          const want = Math.min(SCAN_CHUNK, file.size - pos);
          const n = readSync(fd, chunk, 0, want, pos);
          decoder.push(n === chunk.length ? chunk : chunk.subarray(0, n));
          if (!drain()) break outer;
        }
      } finally {
        closeSync(fd);
      }
      fileOffset = 0;
    }
    if (!reachedEnd && !out.closed) {
      decoder.end();
      drain();
    }
  } catch (error) {
    failure = error;
  }

  out.flush();

  if (failure === undefined) {
    if (printed === 0) say("no records in the range read");
    return 0;
  }
  if (failure instanceof WalDecodeError) {
    say(failure.endOfWal ? `end of WAL: ${failure.message}` : `error in WAL: ${failure.message}`);
    return failure.endOfWal ? 0 : 1;
  }
  if (failure instanceof RangeError || failure instanceof TypeError) {
    say(failure.message);
    return 1;
  }
  throw failure;
}

/** A sequential run's single range, as {@linkcode CombinedStats}. */
function combineFinal(r: RangeResult): CombinedStats {
  return {
    majorVersion: r.majorVersion,
    count: r.count,
    sums: r.sums,
    firstLsn: r.firstLsn,
    lastEnd: r.lastEnd,
    stop: r.stop === "error" || r.stop === "end-option" ? r.stop : "input-end",
    error: r.error,
  };
}

/** Prints the `--stats` table (or JSON) and the reason decoding stopped; the exit code. */
function reportStats(
  c: CombinedStats,
  options: WaldumpOptions,
  out: BufferedOutput,
  say: (message: string) => void,
): number {
  if (options.start !== undefined && c.firstLsn !== undefined && c.firstLsn !== options.start) {
    say(
      `first record is after ${formatLsn(options.start)}, at ${formatLsn(c.firstLsn)}, skipping over ${c.firstLsn - options.start} bytes`,
    );
  }
  const stats = new WalStats(checkVersion(c.majorVersion ?? 15));
  for (let id = 0; id < 256; id++) {
    const n = c.sums[id]!;
    if (n > 0) stats.addCounts(id, n, c.sums[256 + id]!, c.sums[512 + id]!);
  }
  stats.count = c.count;
  stats.startLsn = c.firstLsn;
  stats.endLsn = c.lastEnd;
  if (options.json) out.line(JSON.stringify(stats.toJson()));
  else out.line(c.count > 0 ? stats.formatText().trimEnd() : "");
  out.flush();
  const e = c.error;
  if (c.stop !== "error" || e === undefined) return 0;
  if (e.kind === "decode") {
    say(e.endOfWal ? `end of WAL: ${e.message}` : `error in WAL: ${e.message}`);
    return e.endOfWal ? 0 : 1;
  }
  say(e.message);
  return 1;
}

/** Parses `--jobs`: 1 .. 64 threads. */
function jobsOption(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > 64) {
    throw new InvalidArgumentError(`"${value}" is not a thread count; expected 1 to 64`);
  }
  return n;
}

/**
 * Registers `tideline waldump`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { registerWaldump } from "./waldump.js";
 * registerWaldump(new Command("tideline"));
 * ```
 */
export function registerWaldump(program: Command): void {
  program
    .command("waldump")
    .description("decode WAL segment files and print their records, like pg_waldump")
    .argument("<path...>", "WAL segment files, or directories of them such as a pg_wal")
    .option("--json", "one JSON object per record (with --stats: the statistics as JSON)")
    .option(
      "--stats",
      "per resource manager: records, record bytes, FPI bytes (pg_waldump --stats)",
    )
    .option("-s, --start <lsn>", "start at the first record at or after this LSN", lsnOption)
    .option("-e, --end <lsn>", "stop before the first record that ends after this LSN", lsnOption)
    .option(
      "-t, --timeline <n>",
      "read this PostgreSQL timeline when the files hold several",
      timelineOption,
    )
    .option(
      "-j, --jobs <n>",
      "threads for --stats (default: 2 per 3 CPUs, 1 on two, or 1 per CPU without the native addon; at most 8; 1 below 64 MiB of WAL)",
      jobsOption,
    )
    .addHelpText(
      "after",
      `
Records are printed in pg_waldump's shape; desc: names the record type (as pg_waldump and
pg_walinspect do) and its block references, without the per-type details.
Reading stops at the end of valid WAL; the reason is printed on stderr and the exit code
is 0. Damaged WAL (a CRC mismatch, a bad page header) exits 1, naming the LSN. Files with a
gap, of several timelines, or of mixed segment sizes are reported, not joined.

Examples:
  tideline waldump /var/lib/postgresql/15/main/pg_wal
  tideline waldump --stats --json pg_wal/000000010000000000000003
  tideline waldump --json --start 0/3000060 --end 0/3100000 pg_wal | jq .type`,
    )
    .action(async (paths: string[], options: WaldumpOptions) => {
      process.exitCode = await runWaldump(paths, options);
    });
}
