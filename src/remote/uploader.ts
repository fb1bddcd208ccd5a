/**
 * The upload queue of one timeline: every flushed layer file goes to remote storage,
 * then the remote index that names it, then `remoteConsistentLsn` advances.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type CancellationToken,
  type RequestContext,
  sleep,
  spawn,
  type Task,
  TaskKind,
  type TaskRegistry,
} from "../lifecycle/index.js";
import {
  LayerCorruptError,
  parseTimelineIndex,
  serializeTimelineIndex,
  type Timeline,
  type TimelineIndex,
  TimelineShutdownError,
} from "../timeline/index.js";
import { historyFileName } from "../wal/index.js";
import { remoteKeys } from "./remote_keys.js";
import { type RetryBackoff, retryTransient } from "./retry.js";
import { RemoteObjectDamagedError, type RemoteStorage } from "./storage.js";

/** Options of {@linkcode RemoteUploader.start}. */
export interface UploaderOptions {
  /** Retry backoff for transient errors: first delay, factor, cap (ms). Default 100, 2, 10 000. */
  retry?: RetryBackoff;
  /** Where the upload task registers. */
  registry?: TaskRegistry;
  /** Told about every failed attempt (for logs). */
  onError?: (error: unknown, attempt: number) => void;
}
/**
 * Uploads a timeline's layer files as they are flushed, in LSN order, as a task in the
 * timeline's tree (`RemoteUpload`, holding its gate). Order makes the remote copy
 * consistent at every instant: a layer file is uploaded before the remote index that
 * names it, and `remoteConsistentLsn` advances only once that index is durable remotely.
 * Transient errors are retried with backoff on the task's token; a freeze-and-flush
 * shutdown waits until everything flushed is uploaded, a hard one abandons the rest (the
 * next start uploads it again: uploads are idempotent). Each remote index carries the
 * resume fields of the layers it names (`Timeline.indexAt`), and is preceded by the
 * source's history files of the switches it names. A remote index that comes back
 * damaged at start (a store without atomic puts, an upload cut by a crash) is ignored:
 * every layer is uploaded again.
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
  async #drain(token: CancellationToken): Promise<void> {
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

  #retrying<T>(what: () => Promise<T>, ctx: RequestContext, options: UploaderOptions): Promise<T> {
    return retryTransient(what, ctx.token, {
      ...(options.retry !== undefined ? { retry: options.retry } : {}),
      onError: (error, attempt) => {
        this.#failures++;
        options.onError?.(error, attempt);
      },
    });
  }

  async #run(ctx: RequestContext, options: UploaderOptions): Promise<void> {
    const tl = this.timeline;
    const indexKey = remoteKeys.index(tl.id);
    // What the remote copy already holds (a restart, or an earlier hard shutdown).
    let remote: TimelineIndex | undefined;
    try {
      const existing = await this.#retrying(
        () => this.storage.get(indexKey, ctx.token),
        ctx,
        options,
      );
      if (existing !== undefined) remote = parseTimelineIndex(existing.toString("utf8"), indexKey);
    } catch (error) {
      // A store without atomic puts may keep part of an index whose upload was cut (a crash):
      // trust none of it and upload every layer again, which writes a whole index again.
      if (!(error instanceof RemoteObjectDamagedError || error instanceof LayerCorruptError))
        throw error;
      this.#failures++;
      options.onError?.(error, 1);
    }
    const uploaded = new Set(remote?.layers.map((l) => l.file) ?? []);
    const historyUploaded = new Set(remote?.history.map((h) => historyFileName(h.timeline)) ?? []);
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
        const path = tl.layerFiles.find((f) => f.file === layer.file)?.path;
        if (path === undefined)
          throw new Error(`Layer ${layer.file} of timeline "${tl.id}" is listed but not open`);
        const data = await readFile(path, { signal: ctx.token.signal });
        await this.#retrying(
          () => this.storage.put(remoteKeys.layer(tl.id, layer.file), data, ctx.token),
          ctx,
          options,
        );
        uploaded.add(layer.file);
        this.#uploads++;
        // The remote index names only uploaded layers (the prefix up to this one), and its
        // resume fields are those of that prefix, not of newer local layers.
        const remoteIndex = {
          ...(await tl.indexAt(layer.end, ctx)),
          remoteConsistentLsn: layer.end,
        };
        // History files of the switches it names go first, like the layers.
        for (const h of remoteIndex.history) {
          const name = historyFileName(h.timeline);
          if (historyUploaded.has(name)) continue;
          const content = await readIfExists(join(tl.dir, name));
          // Not fetched from the source (yet): readers make one from the switch in the WAL.
          if (content === undefined) continue;
          await this.#retrying(
            () => this.storage.put(remoteKeys.history(tl.id, name), content, ctx.token),
            ctx,
            options,
          );
          historyUploaded.add(name);
        }
        await this.#retrying(
          () =>
            this.storage.put(indexKey, Buffer.from(serializeTimelineIndex(remoteIndex)), ctx.token),
          ctx,
          options,
        );
        tl.advanceRemoteConsistentLsn(layer.end);
      }
    }
  }
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
