/**
 * Many timelines in one process: what `tideline server` runs. Each timeline has its
 * WAL receiver (and, with remote storage, its uploader) under its own token and gate,
 * which are children of the service's; definitions are persisted so a restart
 * reattaches every timeline.
 *
 * @module
 */
import { rm } from "node:fs/promises";
import {
  CancellationToken,
  Gate,
  RequestContext,
  sleep,
  spawn,
  TaskKind,
  type TaskRegistry,
} from "../lifecycle/index.js";
import {
  attachTimeline,
  RemoteLayerFetcher,
  type RemoteStorage,
  RemoteUploader,
} from "../remote/index.js";
import {
  type LayerCompression,
  type ShutdownMode,
  type ShutdownResult,
  Timeline,
  timelineDir,
} from "../timeline/index.js";
import { formatLsn, type Lsn, segmentStart } from "../wal/index.js";
import {
  identifySources,
  parseSource,
  SystemIdMismatchError,
  WalReceiver,
} from "../walreceiver/index.js";
import type { Logger } from "./log.js";
import {
  checkTimelineDefinition,
  loadTimelineDefinitions,
  removeTimelineDefinition,
  saveTimelineDefinition,
  type TimelineDefinition,
} from "./timeline_definition.js";

/** A timeline of the service, running or not. */
export interface ServiceTimeline {
  readonly definition: TimelineDefinition;
  /** The open timeline; `undefined` when it could not be opened (see `error`). */
  readonly timeline: Timeline | undefined;
  /** Its WAL receiver, while the timeline is active. */
  readonly receiver: WalReceiver | undefined;
  /** Its uploader, with remote storage. */
  readonly uploader: RemoteUploader | undefined;
  /** Why the timeline could not be opened at start. */
  readonly error: string | undefined;
  /** Where its WAL ended when this process opened it (ingest counters start there). */
  readonly openedAt: Lsn | undefined;
}

/** Options of {@linkcode TimelineService.start}. */
export interface TimelineServiceOptions {
  /** The data directory: timelines under `timelines/`, definitions under `server/`. */
  dataDir: string;
  /** Where layer files are uploaded, if anywhere. */
  remote?: RemoteStorage | undefined;
  /** Logs; each timeline's carry its id. */
  log: Logger;
  /** Where the tasks register. Default: the global registry. */
  registry?: TaskRegistry | undefined;
  /** fsync layer files (default true). */
  fsync?: boolean | undefined;
  /** Layer compression. Default "none". */
  compression?: LayerCompression | undefined;
  /** Freeze (and flush, and upload) a layer once it holds this many bytes. Default 16 MiB. */
  layerSize?: number | undefined;
  /** Timelines shut down at once by {@linkcode TimelineService.shutdown}. Default 4. */
  shutdownConcurrency?: number | undefined;
  /**
   * With remote storage: keep at most this many bytes of layer files per timeline on
   * local disk; the oldest layers already in remote storage are evicted (and downloaded
   * again when a read needs them). Default: keep everything.
   */
  localLayerLimit?: number | undefined;
  /** How often the limit is enforced, ms. Default 10 000. */
  evictionIntervalMs?: number | undefined;
  /** The service's token becomes a child of this one (a signal during start-up). */
  parent?: CancellationToken | undefined;
}

/** The id names a timeline the service already has (HTTP 409). */
export class TimelineExistsError extends Error {
  readonly id: string;
  constructor(id: string) {
    super(`Timeline "${id}" already exists`);
    this.name = "TimelineExistsError";
    this.id = id;
  }
}

/** The id names no timeline of the service (HTTP 404). */
export class TimelineNotFoundError extends Error {
  readonly id: string;
  constructor(id: string) {
    super(`Timeline "${id}" does not exist`);
    this.name = "TimelineNotFoundError";
    this.id = id;
  }
}

/** Another request is creating or deleting this timeline right now (HTTP 409). */
export class TimelineBusyError extends Error {
  readonly id: string;
  constructor(id: string) {
    super(`Timeline "${id}" is being created or deleted by another request; try again`);
    this.name = "TimelineBusyError";
    this.id = id;
  }
}

/** The timeline is running (or stopping): it cannot be started (HTTP 409). */
export class TimelineRunningError extends Error {
  readonly id: string;
  readonly state: string;
  constructor(id: string, state: string) {
    super(`Timeline "${id}" is ${state}: stop it first (POST /v1/timelines/${id}/shutdown)`);
    this.name = "TimelineRunningError";
    this.id = id;
    this.state = state;
  }
}

/** The service is shutting down and takes no new work (HTTP 503). */
export class ServiceShuttingDownError extends Error {
  constructor() {
    super("The server is shutting down");
    this.name = "ServiceShuttingDownError";
  }
}

interface Entry {
  definition: TimelineDefinition;
  timeline: Timeline | undefined;
  receiver: WalReceiver | undefined;
  uploader: RemoteUploader | undefined;
  error: string | undefined;
  openedAt: Lsn | undefined;
}

/**
 * The timelines of one `tideline server`.
 *
 * @example
 * ```ts
 * import { createLogger, TimelineService } from "tideline";
 * const service = await TimelineService.start({ dataDir: "/var/lib/tideline", log: createLogger() });
 * // await service.create({ id: "main", sources: ["postgres://replicator@127.0.0.1/postgres"] }, ctx);
 * await service.shutdown("freeze-and-flush");
 * ```
 */
export class TimelineService {
  /** Cancelled by a hard shutdown; every timeline's token is its child. */
  readonly token: CancellationToken;
  /** Every timeline's gate is its child. */
  readonly gate: Gate;
  readonly #options: TimelineServiceOptions;
  readonly #entries = new Map<string, Entry>();
  /** Ids being created or deleted: a second request for one gets 409. */
  readonly #busy = new Set<string>();
  #shutdown: Promise<Map<string, ShutdownResult>> | undefined;

  private constructor(options: TimelineServiceOptions) {
    this.#options = options;
    this.token = options.parent?.child() ?? new CancellationToken();
    this.gate = new Gate("tideline server");
  }

  /**
   * Opens every timeline defined in the data directory and starts its WAL receiver. A
   * timeline that cannot be opened is kept, with its error, so that operators see it.
   */
  static async start(options: TimelineServiceOptions): Promise<TimelineService> {
    const service = new TimelineService(options);
    for (const def of await loadTimelineDefinitions(options.dataDir)) {
      const entry: Entry = {
        definition: def,
        timeline: undefined,
        receiver: undefined,
        uploader: undefined,
        error: undefined,
        openedAt: undefined,
      };
      service.#entries.set(def.id, entry);
      const ctx = RequestContext.root(TaskKind.Main, service.token, options.registry);
      await service.#openAndRun(entry, ctx).catch(() => undefined); // recorded in entry.error
    }
    const limit = options.localLayerLimit;
    if (limit !== undefined && options.remote !== undefined) {
      spawn(
        {
          token: service.token,
          gate: service.gate,
          registry: options.registry,
          name: "layer eviction",
          kind: TaskKind.Background,
        },
        async (ctx) => {
          for (;;) {
            try {
              service.evictLayers(limit);
            } catch (error) {
              options.log.error(
                { task: "layer eviction", kind: TaskKind.Background, error: `${error}` },
                "layer eviction failed",
              );
            }
            await sleep(options.evictionIntervalMs ?? 10_000, ctx.token);
          }
        },
      );
    }
    return service;
  }

  /**
   * Evicts, per timeline, the oldest local layer files that are in remote storage until at
   * most `limit` bytes of layers stay local; returns how many were evicted. Layers in use by
   * a read stay (the next round gets them).
   */
  evictLayers(limit: number): number {
    let evicted = 0;
    for (const { timeline: tl, definition } of this.#entries.values()) {
      if (tl === undefined || tl.state !== "active") continue;
      const local = tl.layerFiles.filter((l) => l.resident);
      let bytes = local.reduce((sum, l) => sum + l.size, 0);
      for (const layer of local) {
        if (bytes <= limit) break;
        const outcome = tl.evictLayer(layer.file);
        if (outcome === "not-uploaded") break; // newer layers are not uploaded either
        if (outcome === "evicted") {
          bytes -= layer.size;
          evicted++;
          this.#options.log.debug(
            { timeline: definition.id, layer: layer.file, localBytes: bytes },
            "layer evicted",
          );
        }
      }
    }
    return evicted;
  }

  /**
   * Opens an entry's timeline (attaching it from remote storage when its local data is
   * gone) and starts it; on failure records the error on the entry and rethrows it.
   */
  async #openAndRun(entry: Entry, ctx: RequestContext): Promise<void> {
    const id = entry.definition.id;
    const { dataDir, remote, log } = this.#options;
    try {
      let timeline: Timeline;
      if (Timeline.exists(dataDir, id)) {
        timeline = await Timeline.open(this.#timelineOptions(id));
      } else {
        // Local data gone (a new disk, a new machine): rebuild it from remote storage.
        const attached = await this.#attach(id, ctx);
        if (attached === undefined) {
          throw new Error(
            `its data is missing from ${dataDir}${remote === undefined ? " (and no --remote to attach it from)" : ` and from ${remote.display}`}`,
          );
        }
        timeline = attached;
      }
      Object.assign(entry, {
        timeline,
        receiver: undefined,
        uploader: undefined,
        error: undefined,
        openedAt: timeline.streamEnd,
      });
      this.#run(entry);
      log.info({ timeline: id, resumeAt: formatLsn(timeline.streamEnd) }, "timeline reattached");
    } catch (error) {
      entry.error = (error as Error).message;
      log.error({ timeline: id, error: entry.error }, "timeline not started");
      throw error;
    }
  }

  /**
   * Starts a timeline again that was stopped (`shutdownTimeline`) or could not be opened:
   * reopens it from its data (or remote storage) and starts its WAL receiver. Throws
   * {@linkcode TimelineNotFoundError}, {@linkcode TimelineBusyError} while it is being
   * created, deleted or started, {@linkcode TimelineRunningError} when it runs, and what
   * opening it throws.
   */
  async startTimeline(id: string, ctx: RequestContext): Promise<ServiceTimeline> {
    const entry = this.get(id);
    if (this.#shutdown !== undefined) throw new ServiceShuttingDownError();
    if (this.#busy.has(id)) throw new TimelineBusyError(id);
    const state = entry.timeline?.state;
    if (state === "active" || state === "stopping") {
      throw new TimelineRunningError(id, state);
    }
    this.#busy.add(id);
    try {
      await this.#openAndRun(entry, ctx);
      return entry;
    } finally {
      this.#busy.delete(id);
    }
  }

  /** The data directory. */
  get dataDir(): string {
    return this.#options.dataDir;
  }

  /** The remote storage, if any. */
  get remote(): RemoteStorage | undefined {
    return this.#options.remote;
  }

  /** Whether a shutdown has begun. */
  get isShuttingDown(): boolean {
    return this.#shutdown !== undefined;
  }

  /** The timelines, sorted by id. */
  list(): ServiceTimeline[] {
    return [...this.#entries.values()].sort((a, b) => (a.definition.id < b.definition.id ? -1 : 1));
  }

  /** One timeline; throws {@linkcode TimelineNotFoundError}. */
  get(id: string): ServiceTimeline {
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new TimelineNotFoundError(id);
    return entry;
  }

  #timelineOptions(id: string) {
    return {
      dataDir: this.#options.dataDir,
      id,
      parent: { token: this.token, gate: this.gate },
      ...(this.#options.registry !== undefined ? { registry: this.#options.registry } : {}),
      fsync: this.#options.fsync ?? true,
      compression: this.#options.compression ?? "none",
      ...(this.#options.layerSize !== undefined ? { layerSize: this.#options.layerSize } : {}),
      // Layers evicted once uploaded come back from remote storage on read.
      ...(this.#options.remote !== undefined
        ? { layerFetcher: new RemoteLayerFetcher(this.#options.remote) }
        : {}),
    };
  }

  /** Rebuilds timeline `id` from remote storage; `undefined` when it is not there. */
  async #attach(id: string, ctx: RequestContext): Promise<Timeline | undefined> {
    const remote = this.#options.remote;
    if (remote === undefined) return undefined;
    const log = this.#options.log.child({ timeline: id });
    log.info({ remote: remote.display }, "looking for the timeline in remote storage");
    const timeline = await attachTimeline({
      ...this.#timelineOptions(id),
      storage: remote,
      ctx,
      retry: {
        onError: (error, attempt) =>
          log.warn({ error: (error as Error).message, attempt }, "download failed"),
      },
    });
    if (timeline !== undefined) {
      log.info(
        { resumeAt: formatLsn(timeline.streamEnd), layers: timeline.layerFiles.length },
        "timeline attached from remote storage",
      );
    }
    return timeline;
  }

  /** Starts the uploader and the WAL receiver of an open timeline. */
  #run(entry: Entry): void {
    const tl = entry.timeline!;
    const def = entry.definition;
    const log = this.#options.log.child({ timeline: def.id });
    const remote = this.#options.remote;
    if (remote !== undefined) {
      entry.uploader = RemoteUploader.start(tl, remote, {
        ...(this.#options.registry !== undefined ? { registry: this.#options.registry } : {}),
        onError: (error, attempt) =>
          log.warn(
            { task: `remote upload ${def.id}`, kind: "RemoteUpload", attempt, error: `${error}` },
            "upload failed",
          ),
      });
    }
    const managerLog = log.child({
      task: `walreceiver manager ${def.id}`,
      kind: "WalReceiverManager",
    });
    entry.receiver = WalReceiver.start(tl, {
      sources: def.sources,
      ...(def.slot !== undefined ? { slot: def.slot, createSlot: true } : {}),
      ...(remote !== undefined ? { applyLsn: () => tl.remoteConsistentLsn } : {}),
      ...(this.#options.registry !== undefined ? { registry: this.#options.registry } : {}),
      onEvent: (event) => {
        const { type, ...fields } = event;
        if (type === "connectionFailed" || type === "gaveUp") managerLog.warn(fields, type);
        else managerLog.info(fields, type);
      },
    });
  }

  /**
   * Defines a new timeline: checks the definition, asks its sources who they are
   * (system id, segment size, position), creates the timeline at a segment boundary
   * (the one holding `startLsn`, else the slot's restart LSN, else the source's current
   * position), persists the definition and starts streaming. Throws `RangeError` for a
   * bad definition, {@linkcode TimelineExistsError}, `NoReachableSourceError`,
   * {@linkcode ServiceShuttingDownError}, or `CancelledError` on `ctx.token`.
   */
  async create(
    input: Omit<TimelineDefinition, "createdAt">,
    ctx: RequestContext,
  ): Promise<ServiceTimeline> {
    const def = checkTimelineDefinition({ ...input, createdAt: new Date().toISOString() });
    if (this.#shutdown !== undefined) throw new ServiceShuttingDownError();
    if (this.#busy.has(def.id)) throw new TimelineBusyError(def.id);
    if (this.#entries.has(def.id) || Timeline.exists(this.#options.dataDir, def.id)) {
      throw new TimelineExistsError(def.id);
    }
    this.#busy.add(def.id);
    try {
      const id = await identifySources(def.sources.map(parseSource), def.slot, ctx.token);
      const from = def.startLsn ?? id.slotRestartLsn ?? id.xlogpos;
      using _guard = this.gate.enter(`create timeline ${def.id}`);
      // A timeline archived before (by this server or `tideline ingest --remote`) goes on
      // from where remote storage ends, if it holds WAL of the same cluster.
      let timeline = await this.#attach(def.id, ctx);
      if (timeline !== undefined && timeline.systemId !== 0n && timeline.systemId !== id.systemId) {
        const held = timeline.systemId;
        await timeline.shutdown("hard");
        await rm(timeline.dir, { recursive: true, force: true });
        throw new SystemIdMismatchError(id.source.display, held, id.systemId);
      }
      timeline ??= await Timeline.create({
        ...this.#timelineOptions(def.id),
        startLsn: segmentStart(from, id.segmentSize),
        segmentSize: id.segmentSize,
        systemId: id.systemId,
        pgTimeline: id.timeline,
      });
      try {
        if (this.#shutdown !== undefined) throw new ServiceShuttingDownError();
        await saveTimelineDefinition(this.#options.dataDir, def);
        // Checked again with no await before the entry is added: a shutdown that began
        // during the save has taken its list of timelines already.
        if (this.#shutdown !== undefined) {
          await removeTimelineDefinition(this.#options.dataDir, def.id);
          throw new ServiceShuttingDownError();
        }
      } catch (error) {
        await timeline.shutdown("hard");
        await rm(timeline.dir, { recursive: true, force: true });
        throw error;
      }
      const entry: Entry = {
        definition: def,
        timeline,
        receiver: undefined,
        uploader: undefined,
        error: undefined,
        openedAt: timeline.streamEnd,
      };
      this.#entries.set(def.id, entry);
      this.#run(entry);
      this.#options.log.info(
        {
          timeline: def.id,
          startLsn: formatLsn(timeline.startLsn),
          systemId: String(id.systemId),
          sources: def.sources.map((s) => parseSource(s).display),
        },
        "timeline created",
      );
      return entry;
    } finally {
      this.#busy.delete(def.id);
    }
  }

  /**
   * Stops one timeline (`hard` or `freeze-and-flush`); it stays listed, stopped, until
   * {@linkcode startTimeline} or a restart of the server.
   */
  async shutdownTimeline(id: string, mode: ShutdownMode): Promise<ShutdownResult> {
    const entry = this.get(id);
    if (entry.timeline === undefined) {
      throw new TimelineNotFoundError(id);
    }
    const result = await entry.timeline.shutdown(mode);
    this.#options.log.info(
      {
        timeline: id,
        mode,
        lastRecordLsn: formatLsn(result.lastRecordLsn),
        diskConsistentLsn: formatLsn(result.diskConsistentLsn),
      },
      "timeline stopped",
    );
    return result;
  }

  /**
   * Deletes a timeline: stops it at once, forgets its definition, removes its local data.
   * What was uploaded to remote storage stays there: it is the archive.
   */
  async delete(id: string): Promise<void> {
    const entry = this.get(id);
    if (this.#busy.has(id)) throw new TimelineBusyError(id);
    if (this.#shutdown !== undefined) throw new ServiceShuttingDownError();
    this.#busy.add(id);
    try {
      if (entry.timeline !== undefined) await entry.timeline.shutdown("hard");
      // Data first, definition last: a crash in between leaves a definition whose data is
      // gone (reported, and deletable again), never data nobody knows about.
      await rm(timelineDir(this.#options.dataDir, id), { recursive: true, force: true });
      await removeTimelineDefinition(this.#options.dataDir, id);
      this.#entries.delete(id);
      this.#options.log.info({ timeline: id }, "timeline deleted");
    } finally {
      this.#busy.delete(id);
    }
  }

  /**
   * Shuts every timeline down, `shutdownConcurrency` at a time, then closes the
   * service's gate. A second call with `hard` turns a freeze-and-flush under way into a
   * hard one (every timeline's token is cancelled) and returns the same promise.
   */
  shutdown(mode: ShutdownMode): Promise<Map<string, ShutdownResult>> {
    if (this.#shutdown !== undefined) {
      if (mode === "hard") {
        this.token.cancel("hard shutdown");
        // Each timeline's shutdown promise is the one #runShutdown awaits (a timeline
        // returns the shutdown under way); the catch only keeps it from being unhandled here.
        for (const e of this.#entries.values()) e.timeline?.shutdown("hard").catch(() => undefined);
      }
      return this.#shutdown;
    }
    this.#shutdown = this.#runShutdown(mode);
    return this.#shutdown;
  }

  async #runShutdown(mode: ShutdownMode): Promise<Map<string, ShutdownResult>> {
    if (mode === "hard") this.token.cancel("hard shutdown");
    const results = new Map<string, ShutdownResult>();
    const queue = [...this.#entries.values()].filter((e) => e.timeline !== undefined);
    const workers = Math.max(1, this.#options.shutdownConcurrency ?? 4);
    const errors: unknown[] = [];
    await Promise.all(
      Array.from({ length: Math.min(workers, queue.length) }, async () => {
        for (let e = queue.shift(); e !== undefined; e = queue.shift()) {
          try {
            results.set(
              e.definition.id,
              await e.timeline!.shutdown(this.token.isCancelled ? "hard" : mode),
            );
          } catch (error) {
            errors.push(error);
            this.#options.log.error(
              { timeline: e.definition.id, error: (error as Error).message },
              "timeline shutdown failed",
            );
            await e.timeline!.shutdown("hard").catch(() => undefined);
          }
        }
      }),
    );
    this.token.cancel("server stopped");
    await this.gate.close();
    if (errors.length > 0)
      throw new AggregateError(errors, `${errors.length} timeline(s) failed to shut down`);
    return results;
  }
}
