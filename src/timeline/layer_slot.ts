/**
 * One layer file a timeline's index lists, on local disk or not: reads pin it, a pin of
 * a layer that is not local downloads it (once, however many readers wait), and an
 * unpinned layer can be evicted.
 *
 * @module
 */
import { unlinkSync } from "node:fs";
import { rm } from "node:fs/promises";
import {
  type CancellationToken,
  type Gate,
  GateClosedError,
  type RequestContext,
  spawn,
  type Task,
  TaskKind,
  type TaskRegistry,
} from "../lifecycle/index.js";
import { LayerCorruptError, LayerNotLocalError, TimelineShutdownError } from "./errors.js";
import type { LayerFetcher } from "./layer_fetcher.js";
import { DiskLayer } from "./layer_file.js";
import type { IndexedLayer } from "./timeline_index.js";

/** Where a slot's downloads run: as tasks of the timeline, with its fetcher. */
export interface DownloadScope {
  readonly timelineId: string;
  readonly token: CancellationToken;
  readonly gate: Gate;
  readonly registry: TaskRegistry | undefined;
  readonly fetcher: LayerFetcher | undefined;
}

/** A layer held open for reading: it is not evicted until the pin is disposed. */
export interface LayerPin extends Disposable {
  readonly layer: DiskLayer;
}

/**
 * A layer file of a timeline: its index entry, its path, and the opened
 * {@linkcode DiskLayer} while the file is local. {@linkcode pin} gives the open layer,
 * downloading it first when it is not local; {@linkcode evict} removes the file of an
 * unpinned layer. A download is a task of the timeline (`RemoteDownload`, holding its
 * gate, on a child of its token) shared by every reader waiting for the layer; each
 * reader waits on its own token, and the download is cancelled once no reader waits.
 *
 * @example
 * ```ts
 * import { LayerSlot } from "tideline/timeline";
 * // const slot = new LayerSlot(indexEntry, "/data/timelines/main/layers/" + indexEntry.file, undefined);
 * // using pin = await slot.pin(ctx, scope);
 * // const bytes = await pin.layer.read(pin.layer.start, pin.layer.end);
 * ```
 */
export class LayerSlot {
  readonly entry: IndexedLayer;
  readonly path: string;
  #layer: DiskLayer | undefined;
  #pins = 0;
  #download: { task: Task<DiskLayer>; waiters: number } | undefined;

  constructor(entry: IndexedLayer, path: string, layer: DiskLayer | undefined) {
    this.entry = entry;
    this.path = path;
    this.#layer = layer;
  }

  /** Whether the layer file is on local disk (and open). */
  get resident(): boolean {
    return this.#layer !== undefined;
  }

  /** The open layer while it is local (for metadata; pin it to read its file). */
  get layer(): DiskLayer | undefined {
    return this.#layer;
  }

  /** Whether a download of it is under way. */
  get downloading(): boolean {
    return this.#download !== undefined;
  }

  /**
   * The open layer, pinned until the returned pin is disposed; downloads it first when it
   * is not local (token-aware: rejects with `CancelledError` once `ctx.token` is
   * cancelled). Throws {@linkcode LayerNotLocalError} when it is not local and there is
   * no fetcher, {@linkcode TimelineShutdownError} when the timeline shuts down meanwhile,
   * and the download's error when it fails (the next pin tries again).
   */
  async pin(ctx: RequestContext, scope: DownloadScope): Promise<LayerPin> {
    for (;;) {
      ctx.throwIfCancelled();
      const layer = this.#layer;
      if (layer !== undefined) return this.#pinned(layer);
      if (scope.fetcher === undefined)
        throw new LayerNotLocalError(scope.timelineId, this.entry.file);
      const download = this.#download ?? this.#startDownload(scope);
      download.waiters++;
      let outcome: Awaited<ReturnType<Task<DiskLayer>["join"]>>;
      try {
        outcome = await download.task.join(ctx.token);
      } finally {
        download.waiters--;
        // Nobody needs it any more: stop it rather than let it hold the timeline's gate.
        if (download.waiters === 0 && !download.task.isFinished)
          download.task.cancel("no reader waits for the layer");
      }
      if (outcome.status === "failed") throw outcome.error;
      if (outcome.status === "cancelled") {
        if (scope.token.isCancelled) throw new TimelineShutdownError(scope.timelineId);
        // Cancelled because its readers left just before this one came: start again.
      }
    }
  }

  #pinned(layer: DiskLayer): LayerPin {
    this.#pins++;
    let released = false;
    return {
      layer,
      [Symbol.dispose]: () => {
        if (released) return;
        released = true;
        this.#pins--;
      },
    };
  }

  #startDownload(scope: DownloadScope): { task: Task<DiskLayer>; waiters: number } {
    const fetcher = scope.fetcher!;
    let task: Task<DiskLayer>;
    try {
      task = spawn(
        {
          token: scope.token,
          gate: scope.gate,
          registry: scope.registry,
          name: `download ${this.entry.file} of ${scope.timelineId}`,
          kind: TaskKind.RemoteDownload,
        },
        async (ctx) => {
          await fetcher.fetch(scope.timelineId, this.entry, this.path, ctx.token);
          let layer: DiskLayer;
          try {
            layer = await DiskLayer.open(this.path);
            if (
              layer.start !== this.entry.start ||
              layer.end !== this.entry.end ||
              layer.fileSize !== this.entry.size
            ) {
              throw new LayerCorruptError(
                this.path,
                `downloaded from ${fetcher.display}, its range or size differs from the index`,
              );
            }
          } catch (error) {
            await rm(this.path, { force: true });
            throw error;
          }
          // Whole and checked: keep it even if cancelled meanwhile.
          this.#layer = layer;
          return layer;
        },
      );
    } catch (error) {
      if (error instanceof GateClosedError) throw new TimelineShutdownError(scope.timelineId);
      throw error;
    }
    const download = { task, waiters: 0 };
    this.#download = download;
    task.onEnded(() => {
      if (this.#download === download) this.#download = undefined;
    });
    return download;
  }

  /**
   * Removes the local file of the layer if nothing reads it (no pin) and no download of
   * it runs; returns whether it did. Synchronous, so no pin can slip in between the check
   * and the removal. The index still lists the layer: the next read downloads it again.
   */
  evict(): boolean {
    if (this.#layer === undefined || this.#pins > 0 || this.#download !== undefined) return false;
    try {
      unlinkSync(this.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    this.#layer = undefined;
    return true;
  }
}
