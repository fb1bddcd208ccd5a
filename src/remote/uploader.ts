/**
 * The upload queue of one timeline: every flushed layer file goes to remote storage,
 * then the remote index that names it, then `remoteConsistentLsn` advances.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import {
  CancelledError,
  type RequestContext,
  sleep,
  spawn,
  type Task,
  TaskKind,
  type TaskRegistry,
} from "../lifecycle/index.js";
import {
  parseTimelineIndex,
  serializeTimelineIndex,
  type Timeline,
  TimelineShutdownError,
} from "../timeline/index.js";
import { type RemoteStorage, RemoteStorageError } from "./storage.js";

/** Options of {@linkcode RemoteUploader.start}. */
export interface UploaderOptions {
  /** Retry backoff for transient errors: first delay, factor, cap (ms). Default 100, 2, 10 000. */
  retry?: { minMs: number; factor: number; maxMs: number };
  /** Where the upload task registers. */
  registry?: TaskRegistry;
  /** Told about every failed attempt (for logs). */
  onError?: (error: unknown, attempt: number) => void;
}

/** The object keys of a timeline in remote storage. */
export const remoteKeys = {
  index: (timeline: string) => `timelines/${timeline}/index.json`,
  layer: (timeline: string, file: string) => `timelines/${timeline}/layers/${file}`,
};

/**
 * Uploads a timeline's layer files as they are flushed, in LSN order, as a task in the
 * timeline's tree (`RemoteUpload`, holding its gate). Order makes the remote copy
 * consistent at every instant: a layer file is uploaded before the remote index that
 * names it, and `remoteConsistentLsn` advances only once that index is durable remotely.
 * Transient errors are retried with backoff on the task's token; a freeze-and-flush
 * shutdown waits until everything flushed is uploaded, a hard one abandons the rest (the
 * next start uploads it again: uploads are idempotent).
 *
 * @example
 * ```ts
 * import { FileStorage, RemoteUploader } from "tideline/remote";
 * // const uploader = RemoteUploader.start(timeline, new FileStorage("/backups"), {});
 * // await timeline.shutdown("freeze-and-flush"); // waits for the uploads too
 * ```
 */
export class RemoteUploader {
  readonly timeline: Timeline;
  readonly storage: RemoteStorage;
  /** The upload task. */
  readonly task: Task<void>;
  #uploads = 0;
  #failures = 0;

  private constructor(timeline: Timeline, storage: RemoteStorage, options: UploaderOptions) {
    this.timeline = timeline;
    this.storage = storage;
    this.task = spawn(
      {
        token: timeline.cancel,
        gate: timeline.gate,
        registry: options.registry,
        name: `remote upload ${timeline.id}`,
        kind: TaskKind.RemoteUpload,
      },
      (ctx) => this.#run(ctx, options),
    );
    const barrier = timeline.addFlushBarrier((token) => this.#drain(token));
    this.task.onEnded(() => barrier[Symbol.dispose]());
  }

  /** Starts uploading `timeline`'s layers to `storage`. */
  static start(
    timeline: Timeline,
    storage: RemoteStorage,
    options: UploaderOptions = {},
  ): RemoteUploader {
    return new RemoteUploader(timeline, storage, options);
  }

  /** Layer files uploaded by this uploader. */
  get uploads(): number {
    return this.#uploads;
  }

  /** Failed upload attempts (retried when transient). */
  get failures(): number {
    return this.#failures;
  }

  /** Waits until everything durable now is in remote storage (token-aware). */
  async #drain(token: import("../lifecycle/index.js").CancellationToken): Promise<void> {
    const target = this.timeline.diskConsistentLsn;
    while (this.timeline.remoteConsistentLsn < target) {
      if (this.task.isFinished) {
        const outcome = await this.task.join();
        if (outcome.status === "failed") throw outcome.error;
        return;
      }
      await sleep(10, token);
    }
  }

  async #retrying<T>(
    what: () => Promise<T>,
    ctx: RequestContext,
    options: UploaderOptions,
  ): Promise<T> {
    const { minMs, factor, maxMs } = options.retry ?? { minMs: 100, factor: 2, maxMs: 10_000 };
    for (let attempt = 1; ; attempt++) {
      try {
        return await what();
      } catch (error) {
        if (error instanceof CancelledError || ctx.token.isCancelled) throw error;
        this.#failures++;
        options.onError?.(error, attempt);
        if (!(error instanceof RemoteStorageError) || !error.transient) throw error;
        await sleep(Math.min(maxMs, minMs * factor ** (attempt - 1)), ctx.token);
      }
    }
  }

  async #run(ctx: RequestContext, options: UploaderOptions): Promise<void> {
    const tl = this.timeline;
    const indexKey = remoteKeys.index(tl.id);
    // What the remote copy already holds (a restart, or an earlier hard shutdown).
    const existing = await this.#retrying(
      () => this.storage.get(indexKey, ctx.token),
      ctx,
      options,
    );
    const uploaded = new Set(
      existing === undefined
        ? []
        : parseTimelineIndex(existing.toString("utf8"), indexKey).layers.map((l) => l.file),
    );
    while (!ctx.token.isCancelled) {
      const local = tl.indexSnapshot();
      const pending = local.layers.filter((l) => !uploaded.has(l.file));
      if (pending.length === 0) {
        try {
          await tl.waitDurable(tl.diskConsistentLsn + 1n, ctx);
        } catch (error) {
          if (error instanceof TimelineShutdownError) return;
          throw error;
        }
        continue;
      }
      for (const layer of pending) {
        const path = tl.layerFiles.find((f) => basename(f.path) === layer.file)?.path;
        if (path === undefined)
          throw new Error(`Layer ${layer.file} of timeline "${tl.id}" is listed but not open`);
        const data = await readFile(path);
        await this.#retrying(
          () => this.storage.put(remoteKeys.layer(tl.id, layer.file), data, ctx.token),
          ctx,
          options,
        );
        uploaded.add(layer.file);
        this.#uploads++;
        // The remote index names only uploaded layers: the prefix up to this one.
        const upTo = local.layers.slice(0, local.layers.indexOf(layer) + 1);
        const remoteIndex = serializeTimelineIndex({
          ...local,
          layers: upTo,
          diskConsistentLsn: layer.end,
          remoteConsistentLsn: layer.end,
        });
        await this.#retrying(
          () => this.storage.put(indexKey, Buffer.from(remoteIndex), ctx.token),
          ctx,
          options,
        );
        tl.advanceRemoteConsistentLsn(layer.end);
      }
    }
  }
}
