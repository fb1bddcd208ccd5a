/**
 * Attaching a timeline from remote storage: rebuilding its local data dir from the remote
 * index and the layers it names, so it can be read, and continue streaming where the
 * remote copy ends.
 *
 * @module
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { RequestContext } from "../lifecycle/index.js";
import {
  acquireWriterLock,
  checkTimelineId,
  DiskLayer,
  type IndexedLayer,
  indexUpTo,
  LayerCorruptError,
  type LayerFetcher,
  parseTimelineIndex,
  Timeline,
  type TimelineIndex,
  type TimelineOptions,
  writeFileAtomic,
  writeTimelineIndex,
} from "../timeline/index.js";
import { historyFileName } from "../wal/index.js";
import { RemoteLayerFetcher } from "./layer_fetcher.js";
import { remoteKeys } from "./remote_keys.js";
import { type RetryOptions, retryTransient } from "./retry.js";
import type { RemoteStorage } from "./storage.js";

/** Options of {@linkcode attachTimeline}: those of `Timeline.open`, and where from. */
export interface AttachTimelineOptions extends TimelineOptions {
  /** The remote storage holding the timeline (`timelines/<id>/...`). */
  storage: RemoteStorage;
  /** Every download and retry waits on `ctx.token`. */
  ctx: RequestContext;
  /**
   * Which layers to download now: `"lazy"` (default) only the newest ones the resume point
   * is derived from, the others on first read (through the timeline's layer fetcher);
   * `"all"` every layer, so the data dir is complete on its own (for `export`, say).
   */
  download?: "lazy" | "all";
  /**
   * Open the timeline read-only: nothing is locked or derived, only the index (and later
   * the layers reads need) is downloaded. For a throwaway dir, such as `restore-wal
   * --remote`'s; such a timeline cannot ingest.
   */
  readOnly?: boolean;
  /** Retrying transient storage errors (default: with backoff, until `ctx.token` is cancelled). */
  retry?: RetryOptions;
}

/**
 * Rebuilds timeline `id` in `dataDir` from remote storage and opens it; resolves with
 * `undefined` when remote storage has no such timeline (creating nothing locally).
 *
 * The local timeline must not exist yet (no `index.json`; a dir left by an interrupted
 * attach is fine: its complete layers are reused, anything else removed). The remote
 * index is read, the layers are downloaded (see `download`), and the local index is
 * written last, atomically: until then the timeline does not exist locally. The resume
 * point is derived from the remote layers themselves ({@linkcode indexUpTo}): the last
 * record of the newest layer gives `nextRecordLsn` and `lastRecordEnd`, its header the
 * PostgreSQL timeline, and only switches before the end count, whatever the remote
 * index's own fields say (an index written while newer layers existed locally carried
 * theirs). So the timeline continues streaming exactly at the end of the remote layers,
 * `remoteConsistentLsn`, with no gap and no duplicate.
 * The opened timeline downloads layers that are not local on read, through
 * `options.layerFetcher` or else a {@linkcode RemoteLayerFetcher} of `storage`.
 *
 * Throws `TypeError` when the timeline exists locally (open it with `Timeline.open`),
 * `LayerCorruptError` when the remote index or a layer is damaged or belongs to another
 * timeline, `RemoteStorageError` when storage fails for good, `CancelledError` when
 * `ctx.token` is cancelled, `TimelineInUseError` when another writer holds the dir.
 *
 * @example
 * ```ts
 * import { attachTimeline, openRemoteStorage, RemoteUploader } from "tideline/remote";
 * import { CancellationToken, RequestContext } from "tideline/lifecycle";
 * const storage = await openRemoteStorage("s3://backups/tideline");
 * const ctx = RequestContext.root("Main", new CancellationToken());
 * const timeline = await attachTimeline({ dataDir: "/data", id: "main", storage, ctx });
 * if (timeline === undefined) console.log("no timeline main in remote storage");
 * else RemoteUploader.start(timeline, storage); // then a WalReceiver continues streaming
 * ```
 */
export async function attachTimeline(
  options: AttachTimelineOptions,
): Promise<Timeline | undefined> {
  const { storage, ctx, download = "lazy", readOnly = false, retry = {}, ...open } = options;
  const id = checkTimelineId(options.id);
  if (download !== "lazy" && download !== "all") {
    throw new RangeError(
      `Unknown attach download mode ${JSON.stringify(download)}: expected "lazy" or "all"`,
    );
  }
  if (Timeline.exists(options.dataDir, id)) {
    throw new TypeError(
      `Timeline "${id}" already exists in ${options.dataDir}: open it instead of attaching it`,
    );
  }
  const indexKey = remoteKeys.index(id);
  const text = await retryTransient(() => storage.get(indexKey, ctx.token), ctx.token, retry);
  if (text === undefined) return undefined;
  const where = `${storage.display}/${indexKey}`;
  const remote = parseTimelineIndex(text.toString("utf8"), where);
  if (remote.id !== id)
    throw new LayerCorruptError(where, `it is the index of timeline "${remote.id}", not "${id}"`);

  const dir = join(options.dataDir, "timelines", id);
  await mkdir(join(dir, "layers"), { recursive: true });
  const fsync = { fsync: open.fsync ?? true };
  const fetcher: LayerFetcher =
    options.layerFetcher ?? new RemoteLayerFetcher(storage, { ...retry, ...fsync });
  const release = readOnly ? undefined : await acquireWriterLock(dir, id);
  try {
    const local = await keepCompleteLayers(dir, remote, readOnly);
    const layerOf = async (l: IndexedLayer): Promise<DiskLayer> => {
      let layer = local.get(l.file);
      if (layer === undefined) {
        const path = join(dir, "layers", l.file);
        await fetcher.fetch(id, l, path, ctx.token);
        layer = await openChecked(path, l);
        local.set(l.file, layer);
      }
      return layer;
    };
    const end = remote.diskConsistentLsn;
    const index: TimelineIndex = readOnly
      ? readOnlyIndex(remote)
      : {
          ...(await indexUpTo(remote, end, async (l) => {
            const layer = await layerOf(l);
            return { records: layer.records, meta: layer.meta };
          })),
          remoteConsistentLsn: end,
        };
    if (download === "all") for (const l of index.layers) await layerOf(l);
    for (const h of index.history) {
      const name = historyFileName(h.timeline);
      const content = await retryTransient(
        () => storage.get(remoteKeys.history(id, name), ctx.token),
        ctx.token,
        retry,
      );
      // Absent when the source's own file was never fetched: one is made from the WAL's switch.
      if (content !== undefined) await writeFileAtomic(join(dir, name), content, fsync);
    }
    ctx.throwIfCancelled();
    // The commit point: from here on the timeline exists locally.
    await writeTimelineIndex(join(dir, "index.json"), index, fsync);
  } finally {
    await release?.();
  }
  return Timeline.open({ ...open, readOnly, layerFetcher: fetcher });
}

/**
 * For a read-only attach: the remote index as it is, but with no switch beyond its layers
 * (the resume fields do not matter to a reader, and deriving them would mean downloading
 * the newest layer).
 */
function readOnlyIndex(remote: TimelineIndex): TimelineIndex {
  const end = remote.diskConsistentLsn;
  return {
    ...remote,
    nextRecordLsn: end,
    lastRecordEnd: end,
    remoteConsistentLsn: end,
    history: remote.history.filter((h) => h.switchLsn < end),
  };
}

/** Opens a layer file and checks it is the one `l` names. */
async function openChecked(path: string, l: IndexedLayer): Promise<DiskLayer> {
  const layer = await DiskLayer.open(path);
  if (layer.start !== l.start || layer.end !== l.end || layer.fileSize !== l.size) {
    throw new LayerCorruptError(path, "its range or size differs from the remote index");
  }
  return layer;
}

/**
 * The layers an interrupted attach left that are whole and named by `remote`; every other
 * file in `layers/` is removed (a reader leaves the dir alone but for what it downloads).
 */
async function keepCompleteLayers(
  dir: string,
  remote: TimelineIndex,
  readOnly: boolean,
): Promise<Map<string, DiskLayer>> {
  const listed = new Map(remote.layers.map((l) => [l.file, l]));
  const kept = new Map<string, DiskLayer>();
  for (const name of await readdir(join(dir, "layers"))) {
    const path = join(dir, "layers", name);
    const l = listed.get(name);
    if (l !== undefined) {
      try {
        kept.set(name, await openChecked(path, l));
        continue;
      } catch {
        // Damaged or another layer under this name: download it again.
      }
    }
    if (!readOnly) await rm(path, { force: true });
  }
  return kept;
}
