/**
 * `tideline waldump`: decode WAL segment files and print their records, in
 * pg_waldump's shape, as JSON lines, or as pg_waldump's `--stats` table.
 *
 * @module
 */
import { closeSync, openSync, readSync } from "node:fs";
import type { Command } from "commander";
import {
  checkVersion,
  formatLsn,
  formatRecordLine,
  type Lsn,
  listWalSegments,
  pageStart,
  recordToJson,
  type SupportedVersion,
  segmentNumber,
  segmentOffset,
  segmentStartLsn,
  WalDecodeError,
  WalDecoder,
  WalFilesError,
  type WalRecord,
  WalStats,
} from "../../../wal/index.js";
import { lsnOption, timelineOption } from "./options.js";
import { BufferedOutput } from "./output.js";

/** Options of {@linkcode runWaldump}. */
export interface WaldumpOptions {
  json?: boolean;
  stats?: boolean;
  start?: Lsn;
  end?: Lsn;
  timeline?: number;
}

const READ_CHUNK = 8 << 20;

/**
 * Runs `tideline waldump` and returns the exit code: 0 when the WAL was read to its end
 * (or to `--end`), 1 when it is damaged or the files do not form one stream, 2 for bad
 * usage. Records go to `stdout`; the reason decoding stopped goes to `stderr`.
 *
 * @example
 * ```ts
 * import { runWaldump } from "./waldump.js";
 * process.exitCode = runWaldump(["/var/lib/postgresql/15/main/pg_wal"], { stats: true });
 * ```
 */
export function runWaldump(
  paths: readonly string[],
  options: WaldumpOptions,
  fds: { stdout: number; stderr: number } = { stdout: 1, stderr: 2 },
): number {
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

  const decoder = new WalDecoder({ startLsn, segmentSize });
  let stats: WalStats | undefined;
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
    if (options.stats) {
      if (stats === undefined) stats = new WalStats(version);
      stats.add(rec);
    } else if (options.json) {
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

  let failure: unknown;
  try {
    outer: for (const file of files) {
      const fd = openSync(file.path, "r");
      try {
        for (let pos = fileOffset; pos < file.size; pos += READ_CHUNK) {
          const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, file.size - pos));
          const n = readSync(fd, chunk, 0, chunk.length, pos);
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

  if (stats !== undefined) {
    out.line(options.json ? JSON.stringify(stats.toJson()) : stats.formatText().trimEnd());
  } else if (options.stats) {
    out.line(
      options.json
        ? JSON.stringify(new WalStats(checkVersion(decoder.majorVersion ?? 15)).toJson())
        : "",
    );
  }
  out.flush();

  if (failure === undefined) {
    if (printed === 0 && !options.stats) say("no records in the range read");
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
    .action((paths: string[], options: WaldumpOptions) => {
      process.exitCode = runWaldump(paths, options);
    });
}
