/**
 * Writing a timeline's WAL out as standard segment files, as they are in pg_wal.
 *
 * @module
 */
import { open, rename } from "node:fs/promises";
import { join } from "node:path";
import type { RequestContext } from "../lifecycle/index.js";
import {
  formatLsn,
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
  /** Files written, in order (the last may be `<name>.partial`). */
  files: string[];
  from: Lsn;
  to: Lsn;
}

/**
 * Writes the timeline's WAL of `[from, to)` as segment files into `outDir`: whole
 * segments under their pg_wal names, byte for byte as the source had them, and an
 * incomplete last one as `<name>.partial`, zero-padded to the segment size as
 * pg_receivewal does. Each file is written to a temporary name, fsynced and renamed.
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
  if (to <= from) return { files, from, to };
  const first = segmentNumber(from, size);
  const last = segmentNumber(to - 1n, size);
  const count = Number(last - first) + 1;
  for (let segno = first; segno <= last; segno++) {
    ctx.throwIfCancelled();
    const start = segmentStartLsn(segno, size);
    const end = start + BigInt(size) < to ? start + BigInt(size) : to;
    const whole = end === start + BigInt(size);
    const name = segmentFileName(timeline.pgTimeline, segno, size) + (whole ? "" : ".partial");
    const tmp = join(outDir, `${name}.tmp`);
    const file = await open(tmp, "w");
    try {
      let offset = 0;
      for await (const piece of timeline.walRange(start, end, ctx)) {
        await file.write(piece, 0, piece.length, offset);
        offset += piece.length;
      }
      if (!whole) await file.truncate(size);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, join(outDir, name));
    files.push(name);
    options.onFile?.(name, files.length, count);
  }
  await fsyncDir(outDir);
  return { files, from, to };
}
