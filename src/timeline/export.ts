/**
 * Writing a timeline's WAL out as standard segment files, as they are in pg_wal.
 *
 * @module
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { RequestContext } from "../lifecycle/index.js";
import {
  DEFAULT_PAGE_SIZE,
  formatLsn,
  historyFileName,
  type Lsn,
  segmentFileName,
  segmentNumber,
  segmentStart,
  segmentStartLsn,
} from "../wal/index.js";
import { fsyncDir } from "./fs_util.js";
import type { Timeline } from "./timeline.js";

/** Options of {@linkcode exportSegments}. */
export interface ExportOptions {
  /** Export from the segment holding this LSN. Default: the first whole segment. */
  from?: Lsn;
  /** Export WAL before this LSN. Default: all the timeline holds. */
  to?: Lsn;
  /** Told after each file is written. */
  onFile?: (name: string, index: number, count: number) => void;
}

/** What {@linkcode exportSegments} wrote. */
export interface ExportResult {
  /** Segment files written, in order (the last may be `<name>.partial`). */
  files: string[];
  /** Timeline history files written (`00000002.history`, ...). */
  historyFiles: string[];
  from: Lsn;
  to: Lsn;
}

/**
 * Writes the timeline's WAL of `[from, to)` as segment files into `outDir`: whole
 * segments under their pg_wal names, byte for byte as the source had them, and an
 * incomplete last one as `<name>.partial`, zero-padded to the segment size as
 * pg_receivewal does. A segment is named after the PostgreSQL timeline of its last page
 * (after a promotion, the segment holding the switch belongs to the new timeline, as in the
 * promoted server's pg_wal), and a `.history` file is written for every timeline switch
 * the WAL holds: the source's own file when the WAL receiver fetched it, else one made from
 * the switch seen in the WAL. Each file is written to a temporary name, fsynced and renamed.
 *
 * @example
 * ```ts
 * import { exportSegments } from "tideline/timeline";
 * // const { files } = await exportSegments(timeline, "/backup/wal", {}, ctx);
 * ```
 */
export async function exportSegments(
  timeline: Timeline,
  outDir: string,
  options: ExportOptions,
  ctx: RequestContext,
): Promise<ExportResult> {
  const size = timeline.segmentSize;
  const firstWhole = segmentStart(timeline.startLsn + BigInt(size) - 1n, size);
  const from = options.from === undefined ? firstWhole : segmentStart(options.from, size);
  const to = options.to ?? timeline.streamEnd;
  if (from < timeline.startLsn) {
    throw new RangeError(
      `Cannot export the segment holding ${formatLsn(options.from ?? from)}: timeline "${timeline.id}" begins at ${formatLsn(timeline.startLsn)}, mid-segment; the first whole segment starts at ${formatLsn(firstWhole)}`,
    );
  }
  if (to > timeline.streamEnd) {
    throw new RangeError(
      `--to ${formatLsn(to)} is beyond the WAL timeline "${timeline.id}" holds (up to ${formatLsn(timeline.streamEnd)})`,
    );
  }
  const files: string[] = [];
  const historyFiles = await writeHistoryFiles(timeline, outDir);
  if (to <= from) return { files, historyFiles, from, to };
  const first = segmentNumber(from, size);
  const last = segmentNumber(to - 1n, size);
  const count = Number(last - first) + 1;
  for (let segno = first; segno <= last; segno++) {
    ctx.throwIfCancelled();
    const start = segmentStartLsn(segno, size);
    const end = start + BigInt(size) < to ? start + BigInt(size) : to;
    const whole = end === start + BigInt(size);
    const name =
      segmentFileName(await lastPageTimeline(timeline, start, end, ctx), segno, size) +
      (whole ? "" : ".partial");
    await writeWalFile(timeline, start, end, join(outDir, name), ctx);
    files.push(name);
    options.onFile?.(name, files.length, count);
  }
  await fsyncDir(outDir);
  return { files, historyFiles, from, to };
}

/**
 * Writes WAL `[start, end)` of `timeline` to `path` as a segment file, zero-padded to the
 * segment size when `end` is short of it: to `<path>.tmp`, fsynced, then renamed. On
 * failure (or cancellation) the temporary file is removed and `path` is untouched.
 *
 * @example
 * ```ts
 * import { writeWalFile } from "tideline/timeline";
 * // await writeWalFile(timeline, 0x3000000n, 0x4000000n, "/restore/000000010000000000000003", ctx);
 * ```
 */
export async function writeWalFile(
  timeline: Timeline,
  start: Lsn,
  end: Lsn,
  path: string,
  ctx: RequestContext,
): Promise<void> {
  const tmp = `${path}.tmp`;
  const file = await open(tmp, "w");
  try {
    try {
      let offset = 0;
      for await (const piece of timeline.walRange(start, end, ctx)) {
        await file.write(piece, 0, piece.length, offset);
        offset += piece.length;
      }
      if (end - start < BigInt(timeline.segmentSize)) await file.truncate(timeline.segmentSize);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (error) {
    // A failed or cancelled read (a layer download, say) leaves nothing behind.
    await rm(tmp, { force: true });
    throw error;
  }
}

/**
 * The pg_wal name of whole segment `segno` of `timeline`, or `undefined` when the
 * timeline does not hold all of it: the segment takes the PostgreSQL timeline of its
 * last page, as in pg_wal after a promotion.
 *
 * @example
 * ```ts
 * import { wholeSegmentName } from "tideline/timeline";
 * // await wholeSegmentName(timeline, 3n, ctx); // "000000010000000000000003"
 * ```
 */
export async function wholeSegmentName(
  timeline: Timeline,
  segno: bigint,
  ctx: RequestContext,
): Promise<string | undefined> {
  const size = BigInt(timeline.segmentSize);
  const start = segmentStartLsn(segno, timeline.segmentSize);
  if (start < timeline.startLsn || start + size > timeline.streamEnd) return undefined;
  return segmentFileName(
    await lastPageTimeline(timeline, start, start + size, ctx),
    segno,
    timeline.segmentSize,
  );
}

/**
 * The content of PostgreSQL timeline `tli`'s history file, if the timeline's WAL
 * switched to it: the source's own file when the WAL receiver fetched it, else one made
 * from the switches seen in the WAL.
 *
 * @example
 * ```ts
 * import { historyFileContent } from "tideline/timeline";
 * // await historyFileContent(timeline, 2); // "1\t0/3000158\tno recovery target specified\n"
 * ```
 */
export async function historyFileContent(
  timeline: Timeline,
  tli: number,
): Promise<string | undefined> {
  if (!timeline.history.some((h) => h.timeline === tli)) return undefined;
  try {
    return await readFile(join(timeline.dir, historyFileName(tli)), "utf8");
  } catch {
    // Made from the switches seen in the WAL: "parent<TAB>switch point<TAB>reason", oldest first.
    return timeline.history
      .filter((s) => s.timeline <= tli)
      .map(
        (s) =>
          `${s.parent}\t${formatLsn(s.switchLsn)}\tswitch to timeline ${s.timeline} seen in WAL by Tideline\n`,
      )
      .join("");
  }
}

/**
 * The PostgreSQL timeline in the header of the last page of `[start, end)` that has one:
 * after an XLOG_SWITCH the rest of the segment is zeros without page headers.
 */
async function lastPageTimeline(
  timeline: Timeline,
  start: Lsn,
  end: Lsn,
  ctx: RequestContext,
): Promise<number> {
  const page = BigInt(DEFAULT_PAGE_SIZE);
  for (let at = start + ((end - start - 1n) / page) * page; at >= start; at -= page) {
    if (end - at < 8n) continue;
    const header = await timeline.readWal(at, at + 8n, ctx);
    const tli = header.readUInt32LE(4); // xlp_magic u16, xlp_info u16, xlp_tli u32
    if (header.readUInt16LE(0) !== 0 && tli !== 0) return tli;
  }
  return timeline.pgTimeline;
}

/** Writes a history file per timeline switch; returns their names. */
async function writeHistoryFiles(timeline: Timeline, outDir: string): Promise<string[]> {
  const names: string[] = [];
  for (const h of timeline.history) {
    const name = historyFileName(h.timeline);
    const content = (await historyFileContent(timeline, h.timeline))!;
    const tmp = join(outDir, `${name}.tmp`);
    const file = await open(tmp, "w");
    try {
      await file.writeFile(content);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, join(outDir, name));
    names.push(name);
  }
  return names;
}
