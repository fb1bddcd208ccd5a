/**
 * A timeline's index file, `index.json`: which layer files hold its WAL and how far it
 * is durable. Replaced atomically after every flush; the only source of truth on
 * restart (a layer file it does not list is discarded).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { formatLsn, type Lsn, parseLsn } from "../wal/index.js";
import { LayerCorruptError } from "./errors.js";
import { writeFileAtomic } from "./fs_util.js";
import { isRelationFilter, type relationFilter } from "./rel_filter.js";

/** A layer's relation filter from the index, checked. */
function relFilterOf(value: unknown, what: string): string {
  if (!isRelationFilter(value)) throw new Error(`${what} is not a relation filter`);
  return value;
}

/** One layer file as the index lists it. */
export interface IndexedLayer {
  file: string;
  start: Lsn;
  end: Lsn;
  size: number;
  records: number;
  /**
   * The relation forks its records touch, as a Bloom filter ({@link relationFilter}): lets a
   * block's history skip an evicted layer without downloading it. Absent in indexes written
   * before it existed.
   */
  relFilter?: string;
}

/** A PostgreSQL timeline switch seen in the WAL (a promotion or archive recovery). */
export interface TimelineSwitch {
  /** The timeline that ended. */
  readonly parent: number;
  /** The timeline that began. */
  readonly timeline: number;
  /** Where WAL of the parent timeline ended (the history file's switch point). */
  readonly switchLsn: Lsn;
}

/** What a timeline's index says. */
export interface TimelineIndex {
  id: string;
  /** The PostgreSQL system identifier, once known (0n before). */
  systemId: bigint;
  /** PostgreSQL major version of the WAL, once known (0 before). */
  pgVersion: number;
  /** PostgreSQL timeline of the newest WAL. */
  pgTimeline: number;
  segmentSize: number;
  /** Where the timeline's WAL begins. */
  startLsn: Lsn;
  /** Everything below it is in fsynced layer files: the end of the last layer. */
  diskConsistentLsn: Lsn;
  /** Where the next record starts (after alignment padding, or the next segment after a switch). */
  nextRecordLsn: Lsn;
  /**
   * The end of the last record in the layers, as the decoder reports it: for a switch
   * record, the end of its segment, which may lie beyond `diskConsistentLsn` while the
   * padding has not all arrived.
   */
  lastRecordEnd: Lsn;
  /** Everything below it is in remote storage. */
  remoteConsistentLsn: Lsn;
  layers: IndexedLayer[];
  /** PostgreSQL timeline switches seen in the WAL, oldest first. */
  history: TimelineSwitch[];
}

const FORMAT = 1;

/**
 * Writes the index atomically.
 *
 * @example
 * ```ts
 * import { writeTimelineIndex } from "tideline/timeline";
 * // await writeTimelineIndex("/data/timelines/main/index.json", index);
 * ```
 */
export async function writeTimelineIndex(
  path: string,
  index: TimelineIndex,
  options: { fsync?: boolean } = {},
): Promise<void> {
  await writeFileAtomic(path, serializeTimelineIndex(index), options);
}

/**
 * The index as the JSON text `index.json` holds (also what remote storage keeps).
 *
 * @example
 * ```ts
 * import { serializeTimelineIndex } from "tideline/timeline";
 * // const text = serializeTimelineIndex(index);
 * ```
 */
export function serializeTimelineIndex(index: TimelineIndex): string {
  const json = {
    format: FORMAT,
    id: index.id,
    systemId: index.systemId.toString(),
    pgVersion: index.pgVersion,
    pgTimeline: index.pgTimeline,
    segmentSize: index.segmentSize,
    startLsn: formatLsn(index.startLsn),
    diskConsistentLsn: formatLsn(index.diskConsistentLsn),
    nextRecordLsn: formatLsn(index.nextRecordLsn),
    lastRecordEnd: formatLsn(index.lastRecordEnd),
    remoteConsistentLsn: formatLsn(index.remoteConsistentLsn),
    history: index.history.map((h) => ({
      parent: h.parent,
      timeline: h.timeline,
      switchLsn: formatLsn(h.switchLsn),
    })),
    layers: [],
  };
  // JSON.stringify(json, null, 2) with the layers in it, but each layer's text made once: an
  // index is rewritten at every flush, with every layer in it (10,000 layers took 15 ms a
  // flush on the ingest thread), and a listed layer's entry does not change.
  const head = JSON.stringify(json, null, 2);
  const empty = '"layers": []\n}';
  if (!head.endsWith(empty)) throw new Error("serializeTimelineIndex: unexpected JSON layout");
  const layers =
    index.layers.length === 0
      ? "[]"
      : `[\n    ${index.layers.map(layerEntryText).join(",\n    ")}\n  ]`;
  return `${head.slice(0, head.length - empty.length)}"layers": ${layers}\n}\n`;
}

/** The text of listed layers' entries, as JSON.stringify indents them inside an index. */
const entryTexts = new WeakMap<
  IndexedLayer,
  { readonly of: IndexedLayer; readonly text: string }
>();

/**
 * A layer's entry as it appears in an index (two levels deep), made once per entry; remade
 * if the entry was changed since (the cache keeps a copy of the fields it was made from).
 */
function layerEntryText(l: IndexedLayer): string {
  const cached = entryTexts.get(l);
  if (
    cached !== undefined &&
    cached.of.file === l.file &&
    cached.of.start === l.start &&
    cached.of.end === l.end &&
    cached.of.size === l.size &&
    cached.of.records === l.records &&
    cached.of.relFilter === l.relFilter
  ) {
    return cached.text;
  }
  const entry = {
    file: l.file,
    start: formatLsn(l.start),
    end: formatLsn(l.end),
    size: l.size,
    records: l.records,
    ...(l.relFilter === undefined ? {} : { relFilter: l.relFilter }),
  };
  const text = JSON.stringify(entry, null, 2).replaceAll("\n", "\n    ");
  entryTexts.set(l, { of: { ...l }, text });
  return text;
}

/**
 * Reads and checks an index; throws {@linkcode LayerCorruptError} if it is malformed.
 *
 * @example
 * ```ts
 * import { readTimelineIndex } from "tideline/timeline";
 * // const index = await readTimelineIndex("/data/timelines/main/index.json");
 * ```
 */
export async function readTimelineIndex(path: string): Promise<TimelineIndex> {
  return parseTimelineIndex(await readFile(path, "utf8"), path);
}

/**
 * Parses and checks index text (`where` names its origin in errors); throws
 * {@linkcode LayerCorruptError} if it is malformed.
 *
 * @example
 * ```ts
 * import { parseTimelineIndex } from "tideline/timeline";
 * // const index = parseTimelineIndex(text, "s3://bucket/timelines/main/index.json");
 * ```
 */
export function parseTimelineIndex(text: string, where: string): TimelineIndex {
  const path = where;
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    if (j.format !== FORMAT) throw new Error(`format ${String(j.format)}, expected ${FORMAT}`);
    const str = (v: unknown, what: string) => {
      if (typeof v !== "string") throw new Error(`${what} is not a string`);
      return v;
    };
    const num = (v: unknown, what: string) => {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
        throw new Error(`${what} is not a count`);
      return v;
    };
    const layers = (Array.isArray(j.layers) ? j.layers : []).map(
      (l: Record<string, unknown>, i: number) => ({
        file: str(l.file, `layers[${i}].file`),
        start: parseLsn(str(l.start, `layers[${i}].start`)),
        end: parseLsn(str(l.end, `layers[${i}].end`)),
        size: num(l.size, `layers[${i}].size`),
        records: num(l.records, `layers[${i}].records`),
        ...(l.relFilter === undefined
          ? {}
          : { relFilter: relFilterOf(l.relFilter, `layers[${i}].relFilter`) }),
      }),
    );
    const index: TimelineIndex = {
      id: str(j.id, "id"),
      systemId: BigInt(str(j.systemId, "systemId")),
      pgVersion: num(j.pgVersion, "pgVersion"),
      pgTimeline: num(j.pgTimeline, "pgTimeline"),
      segmentSize: num(j.segmentSize, "segmentSize"),
      startLsn: parseLsn(str(j.startLsn, "startLsn")),
      diskConsistentLsn: parseLsn(str(j.diskConsistentLsn, "diskConsistentLsn")),
      nextRecordLsn: parseLsn(str(j.nextRecordLsn, "nextRecordLsn")),
      lastRecordEnd:
        j.lastRecordEnd === undefined
          ? parseLsn(str(j.diskConsistentLsn, "diskConsistentLsn"))
          : parseLsn(str(j.lastRecordEnd, "lastRecordEnd")),
      remoteConsistentLsn: parseLsn(str(j.remoteConsistentLsn, "remoteConsistentLsn")),
      layers,
      history: (Array.isArray(j.history) ? j.history : []).map(
        (h: Record<string, unknown>, i: number) => ({
          parent: num(h.parent, `history[${i}].parent`),
          timeline: num(h.timeline, `history[${i}].timeline`),
          switchLsn: parseLsn(str(h.switchLsn, `history[${i}].switchLsn`)),
        }),
      ),
    };
    let at = index.startLsn;
    for (const l of layers) {
      if (l.start !== at)
        throw new Error(
          `layer ${l.file} starts at ${formatLsn(l.start)}, expected ${formatLsn(at)}`,
        );
      at = l.end;
    }
    if (at !== index.diskConsistentLsn) {
      throw new Error(
        `layers end at ${formatLsn(at)} but diskConsistentLsn is ${formatLsn(index.diskConsistentLsn)}`,
      );
    }
    return index;
  } catch (error) {
    throw new LayerCorruptError(path, (error as Error).message);
  }
}
