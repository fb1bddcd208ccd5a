/**
 * Layer files downloaded from remote storage: the `remote` implementation of the
 * timeline's {@linkcode LayerFetcher} hook.
 *
 * @module
 */
import type { CancellationToken } from "../lifecycle/index.js";
import { type IndexedLayer, type LayerFetcher, writeFileAtomic } from "../timeline/index.js";
import { remoteKeys } from "./remote_keys.js";
import { type RetryOptions, retryTransient } from "./retry.js";
import { type RemoteStorage, RemoteStorageError } from "./storage.js";

/** Options of {@linkcode RemoteLayerFetcher}. */
export interface RemoteLayerFetcherOptions extends RetryOptions {
  /** fsync downloaded files (default true). */
  fsync?: boolean;
}

/**
 * Downloads a timeline's layer files from remote storage (`timelines/<id>/layers/<file>`):
 * transient errors are retried with backoff on the download's token; the file is written
 * to `<path>.download`, fsynced and renamed, so a crash or a cancellation never leaves a
 * partial layer where the timeline looks for it (and `<path>.download` is removed on
 * failure, or by the next writable open). An object that is missing or whose size differs
 * from the index fails for good.
 *
 * @example
 * ```ts
 * import { openRemoteStorage, RemoteLayerFetcher } from "tideline/remote";
 * import { Timeline } from "tideline/timeline";
 * const storage = await openRemoteStorage("file:///var/backups/tideline");
 * const timeline = await Timeline.open({
 *   dataDir: "/data",
 *   id: "main",
 *   layerFetcher: new RemoteLayerFetcher(storage),
 * });
 * ```
 */
export class RemoteLayerFetcher implements LayerFetcher {
  readonly storage: RemoteStorage;
  readonly display: string;
  readonly #options: RemoteLayerFetcherOptions;
  #downloads = 0;

  constructor(storage: RemoteStorage, options: RemoteLayerFetcherOptions = {}) {
    this.storage = storage;
    this.display = storage.display;
    this.#options = options;
  }

  /** Layer files downloaded so far. */
  get downloads(): number {
    return this.#downloads;
  }

  async fetch(
    timelineId: string,
    layer: IndexedLayer,
    path: string,
    token: CancellationToken,
  ): Promise<void> {
    const key = remoteKeys.layer(timelineId, layer.file);
    const data = await retryTransient(() => this.storage.get(key, token), token, this.#options);
    if (data === undefined) {
      throw new RemoteStorageError(
        "get",
        key,
        this.display,
        "the layer is named by the index but missing from remote storage",
        false,
      );
    }
    if (data.length !== layer.size) {
      throw new RemoteStorageError(
        "get",
        key,
        this.display,
        `${data.length} bytes, but the index says ${layer.size}`,
        false,
      );
    }
    // Through `<path>.download`: a partial layer is never where the timeline looks for it.
    await writeFileAtomic(path, data, {
      fsync: this.#options.fsync ?? true,
      tmp: `${path}.download`,
      token,
    });
    this.#downloads++;
  }
}
