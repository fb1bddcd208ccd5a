/**
 * Where a timeline cut at a layer boundary resumes, derived from what its layers hold:
 * for remote indexes written while newer layers existed locally, and for an attach,
 * which must never trust resume fields that may be ahead of the layers.
 *
 * @module
 */
import { formatLsn, type Lsn, lsnAlign, lsnMin, segmentStart } from "../wal/index.js";
import type { LayerMeta } from "./layer_file.js";
import type { RecordTable } from "./layer_tables.js";
import type { IndexedLayer, TimelineIndex } from "./timeline_index.js";

/** XLOG_SWITCH: the rest of its segment is padding. */
const XLOG_SWITCH_INFO = 0x40;

/**
 * Where the record after one ending at `end` starts: the next 8-byte boundary, or for an
 * XLOG_SWITCH record (resource manager 0, info 0x40) the start of the next segment.
 *
 * @example
 * ```ts
 * import { nextRecordStart } from "tideline/timeline";
 * nextRecordStart(10, 0x00, 0x100002an, 1 << 20); // 0x1000030n
 * nextRecordStart(0, 0x40, 0x100002an, 1 << 20); // 0x1100000n: after a switch
 * ```
 */
export function nextRecordStart(rmid: number, info: number, end: Lsn, segmentSize: number): Lsn {
  const isSwitch = rmid === 0 && (info & 0xf0) === XLOG_SWITCH_INFO;
  return isSwitch ? segmentStart(end + BigInt(segmentSize) - 1n, segmentSize) : lsnAlign(end);
}

/** What {@linkcode indexUpTo} needs of a layer: its record index and its header's metadata. */
export interface LayerContents {
  readonly records: RecordTable;
  readonly meta: LayerMeta;
}

/**
 * The index of `index`'s timeline as if it ended at layer boundary `end`: the layers up
 * to `end`, and every field a resume depends on derived from those layers alone, never
 * from `index`'s own fields (which may describe newer layers):
 * - `nextRecordLsn` and `lastRecordEnd` from the newest record in them (the record
 *   table of the newest layer that has one: a layer may hold only a switch's padding);
 * - `systemId`, `pgVersion` and `pgTimeline` from the newest layer's header;
 * - `history`: the switches whose switch point lies before `end`;
 * - `diskConsistentLsn` is `end`, `remoteConsistentLsn` at most `end`.
 * `contents` gives a layer's record table and metadata (it may have to download the
 * layer); only the newest layers are asked for. Throws `RangeError` when `end` is not
 * the timeline's start or a layer's end.
 *
 * @example
 * ```ts
 * import { indexUpTo } from "tideline/timeline";
 * // const cut = await indexUpTo(remoteIndex, remoteIndex.layers[2]!.end, async (l) => openedLayers.get(l.file)!);
 * ```
 */
export async function indexUpTo(
  index: TimelineIndex,
  end: Lsn,
  contents: (layer: IndexedLayer) => Promise<LayerContents>,
): Promise<TimelineIndex> {
  const count = end === index.startLsn ? 0 : index.layers.findIndex((l) => l.end === end) + 1;
  if (count === 0 && end !== index.startLsn) {
    throw new RangeError(
      `${formatLsn(end)} is not a layer boundary of timeline "${index.id}" (its layers: ${formatLsn(index.startLsn)}..${formatLsn(index.diskConsistentLsn)})`,
    );
  }
  const layers = index.layers.slice(0, count);
  let meta: LayerMeta = {
    systemId: index.systemId,
    pgVersion: index.pgVersion,
    pgTimeline: index.pgTimeline,
  };
  let nextRecordLsn = index.startLsn;
  let lastRecordEnd = index.startLsn;
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = await contents(layers[i]!);
    if (i === layers.length - 1) meta = layer.meta;
    const { records } = layer;
    const last = records.length - 1;
    if (last < 0) continue;
    lastRecordEnd = records.end[last]!;
    nextRecordLsn = nextRecordStart(
      records.rmid[last]!,
      records.info[last]!,
      lastRecordEnd,
      index.segmentSize,
    );
    break;
  }
  return {
    ...index,
    systemId: meta.systemId !== 0n ? meta.systemId : index.systemId,
    pgVersion: meta.pgVersion !== 0 ? meta.pgVersion : index.pgVersion,
    // Without layers: the timeline the WAL starts on (the first switch's parent, if any).
    pgTimeline:
      layers.length > 0 ? meta.pgTimeline : (index.history[0]?.parent ?? index.pgTimeline),
    diskConsistentLsn: end,
    nextRecordLsn,
    lastRecordEnd,
    remoteConsistentLsn: lsnMin(index.remoteConsistentLsn, end),
    layers,
    history: index.history.filter((h) => h.switchLsn < end),
  };
}
