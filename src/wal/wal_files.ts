/**
 * Finding WAL segment files on disk (a pg_wal directory, or files named one by one)
 * and checking that they form one contiguous stream: one timeline, one segment size,
 * no gap. What does not fit is reported, never silently joined.
 *
 * @module
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { isValidSegmentSize, parseSegmentFileName } from "./segment.js";

/** One WAL segment file. */
export interface WalSegmentFile {
  /** Where it is. */
  readonly path: string;
  /** Its file name (`000000010000000000000001`, maybe with `.partial`). */
  readonly name: string;
  /** The PostgreSQL timeline in its name. */
  readonly timeline: number;
  /** Its segment number. */
  readonly segno: bigint;
  /** Whether it is a `.partial` file (pg_receivewal's unfinished segment). */
  readonly partial: boolean;
  /** Its size in bytes. */
  readonly size: number;
}

/** Why a set of WAL files is not one contiguous stream. */
export type WalFilesErrorCode =
  | "not-found"
  | "no-segments"
  | "several-timelines"
  | "segment-size"
  | "gap"
  | "bad-name";

/**
 * The WAL files named cannot be read as one stream; the message names the files.
 *
 * @example
 * ```ts
 * import { listWalSegments, WalFilesError } from "tideline/wal";
 * try {
 *   listWalSegments(["/var/lib/postgresql/15/main/pg_wal"]);
 * } catch (e) {
 *   if (e instanceof WalFilesError) console.error(e.code, e.message);
 * }
 * ```
 */
export class WalFilesError extends Error {
  readonly code: WalFilesErrorCode;
  constructor(code: WalFilesErrorCode, message: string) {
    super(message);
    this.name = "WalFilesError";
    this.code = code;
  }
}

/** What {@linkcode listWalSegments} found. */
export interface WalSegmentList {
  /** The files, in segment order, contiguous, of one timeline. */
  readonly files: readonly WalSegmentFile[];
  /** The segment size, from the files' sizes and the first long page header. */
  readonly segmentSize: number;
  /** The timeline read. */
  readonly timeline: number;
  /** Timelines present in the directories but not read (when `timeline` chose one). */
  readonly otherTimelines: readonly number[];
}

/** Options of {@linkcode listWalSegments}. */
export interface ListWalSegmentsOptions {
  /** Read this PostgreSQL timeline; required when the files hold several. */
  timeline?: number;
}

/** Offset of `xlp_seg_size` in a long page header. */
const XLP_SEG_SIZE_OFFSET = 32;

/**
 * Collects the segment files named by `paths` (files, or directories whose segment
 * files are taken) and checks that they form one stream: a single timeline (or the one
 * asked for), one segment size, consecutive segment numbers. A `.partial` file is
 * accepted only as the last one. Throws {@linkcode WalFilesError} otherwise, naming the
 * offending files.
 *
 * @example
 * ```ts
 * import { listWalSegments } from "tideline/wal";
 * const { files, segmentSize } = listWalSegments(["pg_wal"]);
 * console.log(files.length, segmentSize);
 * ```
 */
export function listWalSegments(
  paths: readonly string[],
  options: ListWalSegmentsOptions = {},
): WalSegmentList {
  if (paths.length === 0) throw new WalFilesError("not-found", "No WAL file or directory given");
  const candidates: { path: string; name: string; size: number }[] = [];
  for (const path of paths) {
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(path);
    } catch {
      throw new WalFilesError("not-found", `No such file or directory: "${path}"`);
    }
    if (stat.isDirectory()) {
      for (const name of readdirSync(path).sort()) {
        if (!/^[0-9A-F]{24}(\.partial)?$/.test(name)) continue;
        const full = join(path, name);
        const s = statSync(full);
        if (s.isFile()) candidates.push({ path: full, name, size: s.size });
      }
    } else {
      const name = basename(path);
      if (!/^[0-9A-F]{24}(\.partial)?$/.test(name)) {
        throw new WalFilesError(
          "bad-name",
          `"${path}" is not named like a WAL segment file (24 hex digits, e.g. 000000010000000000000001)`,
        );
      }
      candidates.push({ path, name, size: stat.size });
    }
  }
  if (candidates.length === 0) {
    throw new WalFilesError(
      "no-segments",
      `No WAL segment files in ${paths.map((p) => `"${p}"`).join(", ")}`,
    );
  }

  const segmentSize = segmentSizeOf(candidates);
  const files: WalSegmentFile[] = candidates.map((c) => {
    const parsed = parseSegmentFileName(c.name, segmentSize);
    if (parsed === undefined)
      throw new WalFilesError("bad-name", `"${c.path}" is not a WAL segment file`);
    return { ...c, ...parsed };
  });

  const timelines = [...new Set(files.map((f) => f.timeline))].sort((a, b) => a - b);
  let timeline = options.timeline;
  if (timeline === undefined) {
    if (timelines.length > 1) {
      throw new WalFilesError(
        "several-timelines",
        `The WAL files hold several timelines (${timelines.join(", ")}); choose one with --timeline`,
      );
    }
    timeline = timelines[0]!;
  } else if (!timelines.includes(timeline)) {
    throw new WalFilesError(
      "no-segments",
      `No WAL segment files of timeline ${timeline} (found timelines ${timelines.join(", ")})`,
    );
  }
  const chosen = files
    .filter((f) => f.timeline === timeline)
    .sort((a, b) =>
      a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : Number(a.partial) - Number(b.partial),
    );

  for (let i = 1; i < chosen.length; i++) {
    const prev = chosen[i - 1]!;
    const cur = chosen[i]!;
    if (cur.segno === prev.segno) {
      throw new WalFilesError("gap", `Segment given twice: "${prev.path}" and "${cur.path}"`);
    }
    if (prev.partial) {
      throw new WalFilesError(
        "gap",
        `"${prev.path}" is a partial segment but "${cur.path}" follows it`,
      );
    }
    if (cur.segno !== prev.segno + 1n) {
      throw new WalFilesError(
        "gap",
        `The WAL has a gap: ${cur.segno - prev.segno - 1n} segment(s) missing between "${prev.name}" and "${cur.name}"`,
      );
    }
  }
  return {
    files: chosen,
    segmentSize,
    timeline,
    otherTimelines: timelines.filter((t) => t !== timeline),
  };
}

function segmentSizeOf(candidates: readonly { path: string; size: number }[]): number {
  const sizes = new Map<number, string>();
  for (const c of candidates) if (!sizes.has(c.size)) sizes.set(c.size, c.path);
  if (sizes.size > 1) {
    const list = [...sizes].map(([size, path]) => `"${path}" has ${size} bytes`).join(", ");
    throw new WalFilesError("segment-size", `WAL segment files differ in size: ${list}`);
  }
  const [size, path] = [...sizes][0]!;
  if (!isValidSegmentSize(size)) {
    throw new WalFilesError(
      "segment-size",
      `"${path}" has ${size} bytes, not a WAL segment size (a power of two from 1 MiB to 1 GiB)`,
    );
  }
  const header = Buffer.alloc(4);
  const fd = openSync(path, "r");
  try {
    readSync(fd, header, 0, 4, XLP_SEG_SIZE_OFFSET);
  } finally {
    closeSync(fd);
  }
  const declared = header.readUInt32LE(0);
  if (declared !== size && declared !== 0) {
    throw new WalFilesError(
      "segment-size",
      `"${path}" has ${size} bytes but its long page header declares ${declared}-byte segments`,
    );
  }
  return size;
}
