/**
 * The hook through which a timeline gets back a layer file its index lists but its disk
 * lacks: defined here, implemented by the `remote` layer (which may import `timeline`;
 * `timeline` never imports `remote`).
 *
 * @module
 */
import type { CancellationToken } from "../lifecycle/index.js";
import type { IndexedLayer } from "./timeline_index.js";

/**
 * Brings layer files to local disk. A timeline opened with one (`layerFetcher` in
 * {@linkcode TimelineOptions}) may have layers that are not local (evicted once
 * uploaded, or not downloaded yet after an attach); a read that needs one runs a
 * download task that calls {@linkcode fetch}.
 *
 * @example
 * ```ts
 * import type { LayerFetcher } from "tideline/timeline";
 * const fetcher: LayerFetcher = {
 *   display: "nowhere",
 *   async fetch(timelineId, layer, path, token) {
 *     token.throwIfCancelled();
 *     throw new Error(`cannot fetch ${layer.file} of ${timelineId} to ${path}`);
 *   },
 * };
 * ```
 */
export interface LayerFetcher {
  /** Where layers come from, without credentials (for logs and errors). */
  readonly display: string;
  /**
   * Writes layer `layer.file` of timeline `timelineId` to `path`, whole or not at all
   * (a temporary file, fsynced, then renamed). Once `token` is cancelled it rejects with
   * `CancelledError` promptly and leaves no file behind.
   */
  fetch(
    timelineId: string,
    layer: IndexedLayer,
    path: string,
    token: CancellationToken,
  ): Promise<void>;
}
