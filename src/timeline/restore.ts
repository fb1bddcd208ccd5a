/**
 * Serving PostgreSQL's `restore_command`: one WAL file (a segment or a `.history` file)
 * by its pg_wal name, from a timeline.
 *
 * @module
 */
import type { RequestContext } from "../lifecycle/index.js";
import { parseHistoryFileName, parseSegmentFileName, segmentStartLsn } from "../wal/index.js";
import { historyFileContent, wholeSegmentName, writeWalFile } from "./export.js";
import { writeFileAtomic } from "./fs_util.js";
import type { Timeline } from "./timeline.js";

/**
 * Writes the WAL file PostgreSQL asks for (`%f`) to `dest` (`%p`), byte-exact, and
 * returns true; returns false, writing nothing, when the timeline does not hold it: a
 * segment that is not whole yet, or whose pg_wal name differs (PostgreSQL probes a
 * segment on each timeline of its history, newest first), or a `.history` file of a
 * timeline the WAL never switched to. Throws `RangeError` for a name that is neither.
 *
 * @example
 * ```ts
 * import { restoreWalFile } from "tideline/timeline";
 * // const found = await restoreWalFile(timeline, "000000010000000000000003", "pg_wal/RECOVERYXLOG", ctx);
 * ```
 */
export async function restoreWalFile(
  timeline: Timeline,
  name: string,
  dest: string,
  ctx: RequestContext,
): Promise<boolean> {
  const historyTli = parseHistoryFileName(name);
  if (historyTli !== undefined) {
    const content = await historyFileContent(timeline, historyTli);
    if (content === undefined) return false;
    await writeFileAtomic(dest, content);
    return true;
  }
  const seg = parseSegmentFileName(name, timeline.segmentSize);
  if (seg === undefined) {
    throw new RangeError(
      `"${name}" is not a WAL segment or history file name (e.g. 000000010000000000000003 or 00000002.history)`,
    );
  }
  if (seg.partial || (await wholeSegmentName(timeline, seg.segno, ctx)) !== name) return false;
  const start = segmentStartLsn(seg.segno, timeline.segmentSize);
  await writeWalFile(timeline, start, start + BigInt(timeline.segmentSize), dest, ctx);
  return true;
}
