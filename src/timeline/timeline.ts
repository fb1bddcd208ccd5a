/**
 * A timeline: one stream of one PostgreSQL cluster's WAL, kept in layers, with its LSN
 * state, `waitLsn`, reads, and the two shutdown modes.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  CancellationToken,
  CancelledError,
  Gate,
  type RequestContext,
  SeqWait,
  ShutdownError,
  spawn,
  type Task,
  TaskKind,
  type TaskRegistry,
  TimeoutError,
  WAL_RECEIVER_KINDS,
} from "../lifecycle/index.js";
import {
  checkVersion,
  DEFAULT_SEGMENT_SIZE,
  type DumpRecordJson,
  formatLsn,
  type Lsn,
  lsnAlign,
  lsnFromParts,
  lsnMin,
  recordToJson,
  WalDecoder,
  type WalRecord,
} from "../wal/index.js";
import {
  LayerCorruptError,
  LayerNotLocalError,
  TimelineShutdownError,
  TimelineStateError,
  WaitLsnTimeoutError,
  WalDiscontinuityError,
} from "./errors.js";
import { InMemoryLayer } from "./in_memory_layer.js";
import type { LayerFetcher } from "./layer_fetcher.js";
import {
  checkLayerCompression,
  DiskLayer,
  type LayerCompression,
  type LayerMeta,
  writeLayerFile,
} from "./layer_file.js";
import { type DownloadScope, type LayerPin, LayerSlot } from "./layer_slot.js";
import {
  BLOCK_APPLY_IMAGE,
  BLOCK_HAS_IMAGE,
  BLOCK_WILL_INIT,
  type BlockKey,
  type BlockTable,
  type RecordTable,
} from "./layer_tables.js";
import { mayTouchRelation, relationFilter } from "./rel_filter.js";
import { indexUpTo } from "./resume_point.js";
import { checkTimelineId } from "./timeline_id.js";
import {
  type IndexedLayer,
  readTimelineIndex,
  type TimelineIndex,
  type TimelineSwitch,
  writeTimelineIndex,
} from "./timeline_index.js";
import { acquireWriterLock } from "./writer_lock.js";

/** How a timeline shuts down. */
export type ShutdownMode = "hard" | "freeze-and-flush";

/** Where a timeline is in its life. */
export type TimelineState = "active" | "stopping" | "stopped" | "broken";

/** Options shared by {@linkcode Timeline.create} and {@linkcode Timeline.open}. */
export interface TimelineOptions {
  /** The data directory; the timeline lives in `<dataDir>/timelines/<id>`. */
  dataDir: string;
  /** The timeline's id: letters, digits, `-`, `_`. */
  id: string;
  /** The owner: the timeline's token and gate become children of these. Default: roots. */
  parent?: { token: CancellationToken; gate: Gate };
  /** Where its tasks register. Default: the global registry. */
  registry?: TaskRegistry;
  /** Freeze the open layer once it holds this many bytes. Default 16 MiB (a segment). */
  layerSize?: number;
  /** Ingest waits while more frozen layers than this await flushing. Default 2. */
  maxFrozenLayers?: number;
  /**
   * Ingest waits while frozen layers hold more bytes than this. Default 3 × layerSize, so
   * that `maxFrozenLayers` layers (each a little over `layerSize`: a layer is cut at the
   * first record end past it) fit.
   */
  maxFrozenBytes?: number;
  /**
   * Writes a frozen layer file (default {@linkcode writeLayerFile}); a wrapper can
   * observe or slow flushes. It must honour its token.
   */
  writeLayer?: typeof writeLayerFile;
  /** How layer files store WAL: "none" (default), "lz4", or "zstd" (Node.js 22.15+). */
  compression?: LayerCompression;
  /**
   * Freeze the open layer once it is this old (ms) and holds a complete record, even if it
   * is not full, so a quiet source's WAL becomes durable too. Default 30 000.
   */
  maxLayerAgeMs?: number;
  /**
   * fsync layer files and the index (default true). Without it, a machine crash may lose
   * WAL already reported as durable: for tests and benchmarks only.
   */
  fsync?: boolean;
  /**
   * Brings back layer files the index lists but the disk lacks (evicted once uploaded, or
   * not downloaded yet after an attach); reads download them through it. Without one,
   * such layers cannot be read ({@linkcode LayerNotLocalError}), and a writable open
   * refuses a timeline that has any.
   */
  layerFetcher?: LayerFetcher;
}

/** Options of {@linkcode Timeline.create}. */
export interface CreateTimelineOptions extends TimelineOptions {
  /** Where its WAL begins: normally a segment boundary. */
  startLsn: Lsn;
  /** WAL segment size of the cluster. Default 16 MiB. */
  segmentSize?: number;
  /** The cluster's system identifier, when known; WAL of another cluster is refused. */
  systemId?: bigint;
  /** The PostgreSQL timeline the WAL starts on. Default 1. */
  pgTimeline?: number;
}

/** The LSNs a shutdown leaves behind. */
export interface ShutdownResult {
  mode: ShutdownMode;
  lastRecordLsn: Lsn;
  diskConsistentLsn: Lsn;
  remoteConsistentLsn: Lsn;
}

/** What {@linkcode Timeline.blockHistory} returns. */
export interface BlockHistory {
  /** Whether the first record carries a full-page image (or initializes the page). */
  hasBaseImage: boolean;
  /** The newest base image at or before the LSN, then every later record touching the block. */
  records: DumpRecordJson[];
}

interface Frozen {
  readonly layer: InMemoryLayer;
  readonly meta: LayerMeta;
  readonly nextRecordLsn: Lsn;
  readonly lastRecordEnd: Lsn;
}

/** A layer file being written by the flush task. */
interface FlushWrite {
  readonly item: Frozen;
  /** Set once the write has ended. */
  outcome: { disk: DiskLayer; size: number } | { error: unknown } | undefined;
  /** Settles (never rejects) once `outcome` is set and the flush task has been woken. */
  done: Promise<void>;
}

/**
 * Layer files written at the same time: with fsync, most of a layer's flush is waiting for
 * the disk, and the next layer's file can be written meanwhile. Published in order.
 */
const FLUSH_CONCURRENCY = 2;

/** A layer a read can be served from. */
type AnyLayer = { kind: "disk"; slot: LayerSlot } | { kind: "memory"; layer: InMemoryLayer };

/** A layer held for a read: a disk layer stays pinned (not evicted) until released. */
type HeldLayer = ({ kind: "disk"; layer: DiskLayer } | { kind: "memory"; layer: InMemoryLayer }) & {
  release(): void;
};

/** What {@linkcode Timeline.evictLayer} did. */
export type EvictOutcome =
  /** The local file is gone; the next read downloads it again. */
  | "evicted"
  /** Not evicted: the layer is not in remote storage yet (beyond `remoteConsistentLsn`). */
  | "not-uploaded"
  /** Not evicted: a read or a download is using it. */
  | "in-use"
  /** It was not local. */
  | "not-resident";

/** XLOG_END_OF_RECOVERY: written where a new PostgreSQL timeline begins (a promotion). */
const XLOG_END_OF_RECOVERY_INFO = 0x90;
/** XLOG_CHECKPOINT_SHUTDOWN: also begins a new timeline when recovery ends without a promotion. */
const XLOG_CHECKPOINT_SHUTDOWN_INFO = 0x00;
const DEFAULT_LAYER_SIZE = 16 << 20;
const DEFAULT_WAIT_LSN_TIMEOUT_MS = 300_000;

/**
 * Where timeline `id` of `dataDir` keeps its files: `<dataDir>/timelines/<id>`.
 *
 * @example
 * ```ts
 * import { timelineDir } from "tideline/timeline";
 * timelineDir("/data", "main"); // "/data/timelines/main"
 * ```
 */
export function timelineDir(dataDir: string, id: string): string {
  return join(dataDir, "timelines", checkTimelineId(id));
}

/**
 * One stream of one PostgreSQL cluster's WAL.
 *
 * It owns a cancellation token and a gate; everything it runs (its flush task, later its
 * WAL receiver and uploads) is a task in its tree holding that gate. The WAL receiver
 * gets its own child token and child gate ({@linkcode walReceiverScope}), so a
 * freeze-and-flush shutdown can stop and await *just* the WAL receiver before it
 * flushes: no WAL is ingested once the flush has begun.
 *
 * WAL comes in through {@linkcode ingest} in any pieces; it is decoded, appended to the
 * open in-memory layer and indexed; `lastRecordLsn` advances per piece. A full open
 * layer is frozen at a record end and written by the flush task as an immutable layer
 * file; the index is then replaced atomically and `diskConsistentLsn` advances. At most
 * `maxFrozenLayers` / `maxFrozenBytes` wait for flushing: beyond that, ingest waits
 * (token-aware), so memory stays bounded at any ingest rate.
 *
 * @example
 * ```ts
 * import { Timeline } from "tideline/timeline";
 * import { CancellationToken, RequestContext } from "tideline/lifecycle";
 * const tl = await Timeline.create({ dataDir: "/tmp/tideline", id: "main", startLsn: 0x1000000n });
 * const ctx = RequestContext.root("Main", new CancellationToken());
 * // await tl.ingest(0x1000000n, walBytes, ctx);
 * // await tl.waitLsn(0x1001000n, ctx, { timeoutMs: 5000 });
 * await tl.shutdown("freeze-and-flush");
 * ```
 */
export class Timeline {
  readonly id: string;
  /** The timeline's token: cancelling it stops everything it runs. */
  readonly cancel: CancellationToken;
  /** The timeline's gate: every task it runs holds it. */
  readonly gate: Gate;
  /** The directory holding its index and layers. */
  readonly dir: string;
  readonly #registry: TaskRegistry | undefined;
  readonly #layerSize: number;
  readonly #maxFrozenLayers: number;
  readonly #maxFrozenBytes: number;
  readonly #readOnly: boolean;
  readonly #writeLayer: typeof writeLayerFile;
  readonly #fsync: boolean;
  readonly #maxLayerAgeMs: number;
  readonly #compression: LayerCompression;
  /** When the open layer was started (ms since the epoch). */
  #openedAt = Date.now();

  #index: TimelineIndex;
  #state: TimelineState = "active";
  #broken: Error | undefined;
  /** The layer files the index lists, oldest first, local or not. */
  #slots: LayerSlot[] = [];
  readonly #fetcher: LayerFetcher | undefined;
  #frozen: Frozen[] = [];
  #frozenBytes = 0;
  #open: InMemoryLayer;
  #streamEnd: Lsn;
  #decoder: WalDecoder;
  #feedFrom: Lsn;
  #nextRecordLsn: Lsn;
  /** The decoder's end of the last record (a switch record's is its segment's end). */
  #recordEnd: Lsn;
  #meta: LayerMeta;
  #history: TimelineSwitch[];
  #ingesting = false;
  #recordsIngested = 0;
  #layersFlushed = 0;
  #ingestClosed = false;
  readonly #lastRecord: SeqWait<Lsn>;
  readonly #disk: SeqWait<Lsn>;
  readonly #remote: SeqWait<Lsn>;
  readonly #flushBarriers = new Set<(token: CancellationToken) => Promise<void>>();
  /** Advanced whenever the flush task may have work: a layer frozen, a layer file written. */
  readonly #flushWork = new SeqWait<number>(0, { name: "flush work" });
  readonly #flushedCount = new SeqWait<number>(0, { name: "flushed layers" });
  #flushTask: Task<void> | undefined;
  #walReceiver: { token: CancellationToken; gate: Gate } | undefined;
  #shutdown: Promise<ShutdownResult> | undefined;
  #shutdownMode: ShutdownMode | undefined;
  #releaseLock: (() => Promise<void>) | undefined;
  /** Tells `waitLsn` timeouts what the WAL receiver is doing. Set by the WAL receiver. */
  walReceiverStatus: () => string = () => "not running";

  private constructor(
    options: TimelineOptions,
    index: TimelineIndex,
    layers: LayerSlot[],
    readOnly: boolean,
  ) {
    this.id = index.id;
    this.dir = timelineDir(options.dataDir, index.id);
    this.cancel = options.parent?.token.child() ?? new CancellationToken();
    this.gate =
      options.parent?.gate.child(`timeline ${index.id}`) ?? new Gate(`timeline ${index.id}`);
    this.#registry = options.registry;
    this.#layerSize = positive(options.layerSize ?? DEFAULT_LAYER_SIZE, "layerSize");
    this.#maxFrozenLayers = positive(options.maxFrozenLayers ?? 2, "maxFrozenLayers");
    this.#maxFrozenBytes = positive(
      options.maxFrozenBytes ?? 3 * this.#layerSize,
      "maxFrozenBytes",
    );
    this.#readOnly = readOnly;
    this.#writeLayer = options.writeLayer ?? writeLayerFile;
    this.#fsync = options.fsync ?? true;
    this.#maxLayerAgeMs = positive(options.maxLayerAgeMs ?? 30_000, "maxLayerAgeMs");
    this.#compression = checkLayerCompression(options.compression ?? "none");
    this.#index = index;
    this.#slots = layers;
    this.#fetcher = options.layerFetcher;
    this.#meta = {
      systemId: index.systemId,
      pgTimeline: index.pgTimeline,
      pgVersion: index.pgVersion,
    };
    const resume = index.diskConsistentLsn;
    this.#open = new InMemoryLayer(resume);
    this.#streamEnd = resume;
    this.#nextRecordLsn = index.nextRecordLsn;
    this.#recordEnd = index.lastRecordEnd;
    this.#history = [...index.history];
    this.#feedFrom = index.nextRecordLsn;
    this.#decoder = this.#newDecoder();
    this.#lastRecord = new SeqWait<Lsn>(resume, { name: `timeline ${index.id} lastRecordLsn` });
    this.#disk = new SeqWait<Lsn>(resume, { name: `timeline ${index.id} diskConsistentLsn` });
    this.#remote = new SeqWait<Lsn>(index.remoteConsistentLsn, {
      name: `timeline ${index.id} remoteConsistentLsn`,
    });
  }

  /**
   * Whether a timeline with this id exists in `dataDir`.
   *
   * @example
   * ```ts
   * import { Timeline } from "tideline/timeline";
   * Timeline.exists("/data", "main"); // false on a fresh data dir
   * ```
   */
  static exists(dataDir: string, id: string): boolean {
    return existsSync(join(timelineDir(dataDir, checkTimelineId(id)), "index.json"));
  }

  /**
   * Creates a new, empty timeline whose WAL starts at `startLsn`. Throws if it exists.
   *
   * @example
   * ```ts
   * import { Timeline } from "tideline/timeline";
   * const tl = await Timeline.create({ dataDir: "/tmp/t", id: "main", startLsn: 0x1000000n });
   * await tl.shutdown("hard");
   * ```
   */
  static async create(options: CreateTimelineOptions): Promise<Timeline> {
    const id = checkTimelineId(options.id);
    const dir = timelineDir(options.dataDir, id);
    if (existsSync(join(dir, "index.json")))
      throw new TypeError(`Timeline "${id}" already exists in ${options.dataDir}`);
    await mkdir(join(dir, "layers"), { recursive: true });
    const release = await acquireWriterLock(dir, id);
    const index: TimelineIndex = {
      id,
      systemId: options.systemId ?? 0n,
      pgVersion: 0,
      pgTimeline: options.pgTimeline ?? 1,
      segmentSize: options.segmentSize ?? DEFAULT_SEGMENT_SIZE,
      startLsn: options.startLsn,
      diskConsistentLsn: options.startLsn,
      nextRecordLsn: options.startLsn,
      lastRecordEnd: options.startLsn,
      remoteConsistentLsn: options.startLsn,
      layers: [],
      history: [],
    };
    try {
      await writeTimelineIndex(join(dir, "index.json"), index);
    } catch (error) {
      await release();
      throw error;
    }
    return Timeline.#start(options, index, [], false, release);
  }

  /**
   * Opens an existing timeline after a clean stop or a crash: reads its index, checks
   * every listed layer file, and discards files the index does not list (torn or
   * half-written ones, interrupted downloads). It resumes exactly at `diskConsistentLsn`.
   * A listed layer whose file is not local (evicted, or not downloaded yet after an
   * attach) is downloaded on first read through `layerFetcher`; without one, a writable
   * open throws {@linkcode LayerNotLocalError} and a read-only one fails only the reads
   * that need it. With `readOnly`, it changes nothing on disk and runs no task of its own
   * (for `export` beside a running ingest).
   *
   * @example
   * ```ts
   * import { Timeline } from "tideline/timeline";
   * const tl = await Timeline.open({ dataDir: "/tmp/t", id: "main" });
   * console.log(tl.diskConsistentLsn);
   * ```
   */
  static async open(options: TimelineOptions & { readOnly?: boolean }): Promise<Timeline> {
    const id = checkTimelineId(options.id);
    const dir = timelineDir(options.dataDir, id);
    if (!existsSync(join(dir, "index.json")))
      throw new TypeError(`No timeline "${id}" in ${options.dataDir}`);
    const index = await readTimelineIndex(join(dir, "index.json"));
    const listed = new Set(index.layers.map((l) => l.file));
    const readOnly = options.readOnly ?? false;
    // Only the writer may clean up: a reader beside a running ingest must not remove its files.
    const release = readOnly ? undefined : await acquireWriterLock(dir, id);
    try {
      if (!readOnly) {
        await rm(join(dir, "index.json.tmp"), { force: true });
        for (const name of await readdir(join(dir, "layers"))) {
          if (!listed.has(name)) await rm(join(dir, "layers", name), { force: true });
        }
      }
      const layers: LayerSlot[] = [];
      for (const l of index.layers) {
        const path = join(dir, "layers", l.file);
        if (!existsSync(path)) {
          // Evicted, or not downloaded yet after an attach: fetched on first read, if it can be.
          if (options.layerFetcher === undefined && !readOnly)
            throw new LayerNotLocalError(id, l.file);
          layers.push(new LayerSlot(l, path, undefined));
          continue;
        }
        const layer = await DiskLayer.open(path);
        if (layer.start !== l.start || layer.end !== l.end) {
          throw new LayerCorruptError(layer.path, "its range differs from the index");
        }
        layers.push(new LayerSlot(l, path, layer));
      }
      return Timeline.#start(options, index, layers, readOnly, release);
    } catch (error) {
      await release?.();
      throw error;
    }
  }

  static #start(
    options: TimelineOptions,
    index: TimelineIndex,
    layers: LayerSlot[],
    readOnly: boolean,
    releaseLock?: () => Promise<void>,
  ): Timeline {
    const tl = new Timeline(options, index, layers, readOnly);
    tl.#releaseLock = releaseLock;
    if (!readOnly) {
      tl.#flushTask = spawn(
        {
          token: tl.cancel,
          gate: tl.gate,
          registry: tl.#registry,
          name: `layer flush ${tl.id}`,
          kind: TaskKind.LayerFlush,
        },
        (ctx) => tl.#flushLoop(ctx),
      );
    }
    return tl;
  }

  /** Where the timeline is in its life. */
  get state(): TimelineState {
    return this.#state;
  }

  /** The end of the last complete record ingested. */
  get lastRecordLsn(): Lsn {
    return this.#lastRecord.load();
  }

  /** Everything below it is fsynced in layer files and survives a crash. */
  get diskConsistentLsn(): Lsn {
    return this.#disk.load();
  }

  /** Everything below it is in remote storage. */
  get remoteConsistentLsn(): Lsn {
    return this.#remote.load();
  }

  /**
   * Records that everything below `lsn` is in remote storage (the uploader calls it once
   * the remote index naming those layers is durable). Never moves back; never past
   * `diskConsistentLsn`. Kept in the local index from the next flush on.
   *
   * @example
   * ```ts
   * // timeline.advanceRemoteConsistentLsn(uploadedLayer.end);
   * ```
   */
  advanceRemoteConsistentLsn(lsn: Lsn): void {
    if (lsn > this.#disk.load()) {
      throw new RangeError(
        `remoteConsistentLsn ${formatLsn(lsn)} cannot pass diskConsistentLsn ${formatLsn(this.#disk.load())}`,
      );
    }
    if (lsn > this.#remote.load()) this.#remote.advance(lsn);
  }

  /**
   * Resolves once `diskConsistentLsn >= lsn` (token-aware); rejects with
   * `TimelineShutdownError` when the timeline shuts down first.
   *
   * @example
   * ```ts
   * // await timeline.waitDurable(timeline.diskConsistentLsn + 1n, ctx); // the next flush
   * ```
   */
  async waitDurable(lsn: Lsn, ctx: RequestContext): Promise<void> {
    try {
      await this.#disk.wait(lsn, { token: ctx.token });
    } catch (error) {
      if (error instanceof ShutdownError) throw new TimelineShutdownError(this.id);
      throw error;
    }
  }

  /**
   * Adds work that a freeze-and-flush shutdown must await after the flush (the upload
   * queue draining); it gets the timeline's token, so a hard shutdown cuts it short.
   * Disposing the returned handle removes it.
   *
   * @example
   * ```ts
   * // using _barrier = timeline.addFlushBarrier((token) => uploader.drain(token));
   * ```
   */
  addFlushBarrier(barrier: (token: CancellationToken) => Promise<void>): Disposable {
    this.#flushBarriers.add(barrier);
    return { [Symbol.dispose]: () => this.#flushBarriers.delete(barrier) };
  }

  /** A copy of the index as it is now (for the uploader's remote index). */
  indexSnapshot(): TimelineIndex {
    return {
      ...this.#index,
      remoteConsistentLsn: this.#remote.load(),
      layers: [...this.#index.layers],
      history: [...this.#index.history],
    };
  }

  /** Where the timeline's WAL begins. */
  get startLsn(): Lsn {
    return this.#index.startLsn;
  }

  /** The end of the WAL bytes received (may be inside a record still streaming). */
  get streamEnd(): Lsn {
    return this.#streamEnd;
  }

  /** WAL segment size of the cluster. */
  get segmentSize(): number {
    return this.#index.segmentSize;
  }

  /** The cluster's system identifier (0n until the first long page header is seen). */
  get systemId(): bigint {
    return this.#meta.systemId;
  }

  /** The PostgreSQL timeline of the newest WAL. */
  get pgTimeline(): number {
    return this.#meta.pgTimeline;
  }

  /** The PostgreSQL major version of its WAL (0 until known). */
  get pgVersion(): number {
    return this.#meta.pgVersion;
  }

  /** Bytes held by frozen layers waiting to be flushed. */
  get frozenBytes(): number {
    return this.#frozenBytes;
  }

  /** Frozen layers waiting to be flushed. */
  get frozenLayers(): number {
    return this.#frozen.length;
  }

  /** Bytes in the open in-memory layer. */
  get openLayerBytes(): number {
    return this.#open.size;
  }

  /**
   * Layer files, oldest first, with whether each is on local disk (`resident`): one that
   * is not was evicted, or not downloaded yet after an attach, and is downloaded on read.
   */
  get layerFiles(): readonly {
    file: string;
    start: Lsn;
    end: Lsn;
    path: string;
    size: number;
    resident: boolean;
  }[] {
    return this.#slots.map((s) => ({
      file: s.entry.file,
      start: s.entry.start,
      end: s.entry.end,
      path: s.path,
      size: s.entry.size,
      resident: s.resident,
    }));
  }

  /** Records decoded and indexed by this process (a counter, for metrics). */
  get recordsIngested(): number {
    return this.#recordsIngested;
  }

  /** Layer files written by this process (a counter, for metrics). */
  get layersFlushed(): number {
    return this.#layersFlushed;
  }

  /**
   * Removes the local file of layer `file` (its name in {@linkcode layerFiles}) to save
   * disk space and memory, when it is in remote storage (it ends at or below
   * `remoteConsistentLsn`) and no read or download is using it; the next read that needs
   * it downloads it again through the timeline's {@linkcode LayerFetcher}. Never waits.
   * Throws `RangeError` for a layer the timeline does not have, `TypeError` on a
   * read-only timeline or one without a layer fetcher (the layer could not come back).
   *
   * @example
   * ```ts
   * // for (const l of timeline.layerFiles) if (l.resident) timeline.evictLayer(l.file);
   * ```
   */
  evictLayer(file: string): EvictOutcome {
    const slot = this.#slots.find((s) => s.entry.file === file);
    if (slot === undefined)
      throw new RangeError(`Timeline "${this.id}" has no layer ${JSON.stringify(file)}`);
    if (this.#readOnly)
      throw new TypeError(`Timeline "${this.id}" is open read-only: it cannot evict layers`);
    if (this.#fetcher === undefined) {
      throw new TypeError(
        `Timeline "${this.id}" has no layer fetcher: an evicted layer could not be read again`,
      );
    }
    if (slot.entry.end > this.#remote.load()) return "not-uploaded";
    if (!slot.resident) return "not-resident";
    return slot.evict() ? "evicted" : "in-use";
  }

  /**
   * The index of this timeline as if it ended at layer boundary `end` (the start, or a
   * layer's end), with the resume fields derived from those layers alone
   * ({@linkcode indexUpTo}): what remote storage holds once the layers up to `end` are
   * uploaded. May download a layer that is not local (on `ctx.token`).
   *
   * @example
   * ```ts
   * // const remoteIndex = await timeline.indexAt(uploadedLayer.end, ctx);
   * ```
   */
  async indexAt(end: Lsn, ctx: RequestContext): Promise<TimelineIndex> {
    const index = this.indexSnapshot();
    return indexUpTo(index, end, async (entry) => {
      const slot = this.#slots.find((s) => s.entry.file === entry.file);
      if (slot === undefined)
        throw new RangeError(`Timeline "${this.id}" has no layer ${entry.file}`);
      using pin = await slot.pin(ctx, this.#downloadScope());
      return { records: pin.layer.records, meta: pin.layer.meta };
    });
  }

  #downloadScope(): DownloadScope {
    return {
      timelineId: this.id,
      token: this.cancel,
      gate: this.gate,
      registry: this.#registry,
      fetcher: this.#fetcher,
    };
  }

  /** Holds `entry` for a read: a disk layer is pinned, and downloaded first if not local. */
  async #hold(entry: AnyLayer, ctx: RequestContext): Promise<HeldLayer> {
    if (entry.kind === "memory") return { kind: "memory", layer: entry.layer, release() {} };
    const pin: LayerPin = await entry.slot.pin(ctx, this.#downloadScope());
    return { kind: "disk", layer: pin.layer, release: () => pin[Symbol.dispose]() };
  }

  /** How many `waitLsn` calls are waiting. */
  get waitLsnWaiters(): number {
    return this.#lastRecord.waiters;
  }

  /**
   * The token and gate the WAL receiver runs under: children of the timeline's, made
   * anew after the previous WAL receiver was stopped. Throws
   * {@linkcode TimelineShutdownError} once the timeline is shutting down.
   *
   * @example
   * ```ts
   * // const { token, gate } = timeline.walReceiverScope();
   * // spawn({ token, gate, name: "walreceiver manager", kind: TaskKind.WalReceiverManager }, ...);
   * ```
   */
  walReceiverScope(): { token: CancellationToken; gate: Gate } {
    if (this.#state !== "active" || this.#ingestClosed || this.#readOnly)
      throw new TimelineShutdownError(this.id);
    if (this.#walReceiver === undefined || this.#walReceiver.gate.isClosing) {
      this.#walReceiver = { token: this.cancel.child(), gate: this.gate.child("walreceiver") };
    }
    return this.#walReceiver;
  }

  /**
   * Stops the WAL receiver: cancels its token and waits until every task of its
   * subtree has ended (its child gate closed). The timeline stays open.
   *
   * @example
   * ```ts
   * // await timeline.stopWalReceiver();
   * ```
   */
  async stopWalReceiver(): Promise<void> {
    const scope = this.#walReceiver;
    if (scope === undefined) return;
    scope.token.cancel("WAL receiver stopped");
    await scope.gate.close();
  }

  #newDecoder(): WalDecoder {
    return new WalDecoder({
      startLsn: this.#feedFrom,
      segmentSize: this.#index.segmentSize,
      ...(this.#meta.systemId !== 0n ? { expectedSystemId: this.#meta.systemId } : {}),
      ...(this.#meta.pgVersion !== 0 ? { majorVersion: this.#meta.pgVersion } : {}),
    });
  }

  #checkUsable(): void {
    if (this.#state === "broken")
      throw new TimelineStateError(this.id, "broken", this.#broken?.message ?? "");
    if (this.#state !== "active" || this.#ingestClosed) throw new TimelineShutdownError(this.id);
  }

  /**
   * Takes WAL bytes that continue the stream exactly at `startLsn` (the timeline keeps
   * `bytes`: do not reuse its memory). Decodes and indexes the complete records, advances
   * `lastRecordLsn`, and freezes the open layer when it is full; then waits, on
   * `ctx.token`, while too many frozen layers await flushing. Damaged WAL throws the
   * decoder's error after dropping the bytes past the last complete record, so the
   * stream can be restarted at `lastRecordLsn`.
   *
   * @example
   * ```ts
   * // await timeline.ingest(timeline.streamEnd, walBytes, ctx);
   * ```
   */
  async ingest(startLsn: Lsn, bytes: Buffer, ctx: RequestContext): Promise<void> {
    ctx.throwIfCancelled();
    this.#checkUsable();
    if (this.#readOnly) throw new TypeError(`Timeline "${this.id}" is open read-only`);
    if (this.#ingesting)
      throw new TypeError(
        `Timeline "${this.id}": ingest called again before the previous call finished`,
      );
    if (startLsn !== this.#streamEnd)
      throw new WalDiscontinuityError(this.id, this.#streamEnd, startLsn);
    this.#ingesting = true;
    try {
      this.#open.append(bytes);
      const end = startLsn + BigInt(bytes.length);
      this.#streamEnd = end;
      if (end > this.#feedFrom) {
        this.#decoder.push(
          startLsn >= this.#feedFrom ? bytes : bytes.subarray(Number(this.#feedFrom - startLsn)),
        );
      }
      // The end of the last record is kept as 32-bit halves inside the loop and made a
      // bigint once per piece: per record, the bigints were most of ingest's garbage.
      let endHi = -1;
      let endLo = 0;
      const recordEnd = () => {
        if (endHi >= 0) {
          this.#recordEnd = lsnFromParts(endHi, endLo);
          // A switch record's end is its segment's end, already where the next one starts.
          this.#nextRecordLsn = lsnAlign(this.#recordEnd);
          endHi = -1;
        }
        return this.#recordEnd;
      };
      try {
        for (let rec = this.#decoder.next(); rec !== undefined; rec = this.#decoder.next()) {
          this.#addRecord(rec, recordEnd);
          endHi = rec.endHi;
          endLo = rec.endLo;
        }
      } catch (error) {
        recordEnd();
        this.#advanceLastRecord();
        this.#rewindToLastRecord();
        throw error;
      }
      recordEnd();
      this.#advanceLastRecord();
      if (this.#open.size >= this.#layerSize) this.#freezeOpen();
      await this.#awaitRoom(ctx.token);
    } finally {
      this.#ingesting = false;
    }
  }

  /** Indexes a record; `recordEnd()` gives the end of the record before it. */
  #addRecord(rec: WalRecord, recordEnd: () => Lsn): void {
    this.#open.addRecord(rec);
    this.#recordsIngested++;
    if (this.#meta.pgVersion === 0) this.#meta.pgVersion = checkVersion(this.#decoder.majorVersion);
    const sysId = this.#decoder.systemId;
    if (sysId !== undefined && this.#meta.systemId === 0n) this.#meta.systemId = sysId;
    const tli = this.#decoder.timeline;
    if (tli !== undefined) this.#meta.pgTimeline = tli;
    const kind = rec.info & 0xf0;
    if (
      rec.rmid === 0 &&
      (kind === XLOG_END_OF_RECOVERY_INFO || kind === XLOG_CHECKPOINT_SHUTDOWN_INFO) &&
      rec.mainDataLen >= 16
    ) {
      // Both start with 8 bytes (end_time / redo), then ThisTimeLineID (4), PrevTimeLineID (4).
      const data = rec.mainData();
      const timeline = data.readUInt32LE(8);
      const parent = data.readUInt32LE(12);
      if (timeline !== parent && !this.#history.some((h) => h.timeline === timeline)) {
        // The switch point is where WAL of the parent timeline ended: the end of the record before.
        this.#history.push({ parent, timeline, switchLsn: recordEnd() });
      }
    }
  }

  /** PostgreSQL timeline switches seen in this timeline's WAL, oldest first. */
  get history(): readonly TimelineSwitch[] {
    return this.#history;
  }

  /**
   * Moves `lastRecordLsn` to the end of the last record, but never past the bytes
   * received: a switch record "ends" at the end of its segment, and its zero padding
   * may still be streaming in. A `waitLsn` that returns can always read what it waited for.
   */
  #advanceLastRecord(): void {
    const reached = lsnMin(this.#recordEnd, this.#streamEnd);
    if (reached > this.#lastRecord.load()) this.#lastRecord.advance(reached);
  }

  /**
   * Where the open layer can be cut: the end of the last complete record, or the end of
   * the bytes received if that is earlier (a switch record "ends" at the end of its
   * segment, before its zero padding has streamed in).
   */
  #cutPoint(): Lsn {
    return lsnMin(this.#lastRecord.load(), this.#open.end);
  }

  /** After bad WAL: drop everything past the last complete record and restart the decoder there. */
  #rewindToLastRecord(): void {
    const at = this.#cutPoint();
    if (at >= this.#open.start) this.#open.truncate(at);
    this.#streamEnd = at;
    this.#feedFrom = this.#nextRecordLsn;
    this.#decoder = this.#newDecoder();
  }

  /**
   * Drops the bytes received past the last complete record (the start of a record still
   * streaming) and returns where the stream now ends. Nothing durable is touched: those
   * bytes are never in a layer file. For a WAL receiver whose source's timeline ended
   * inside that record (a promotion): the new timeline continues from the switch point.
   * Throws `TypeError` while an `ingest` call is running.
   *
   * @example
   * ```ts
   * // const resumeAt = timeline.discardIncompleteTail();
   * ```
   */
  discardIncompleteTail(): Lsn {
    if (this.#ingesting)
      throw new TypeError(`Timeline "${this.id}": cannot drop the tail while ingest runs`);
    this.#checkUsable();
    if (this.#streamEnd > this.#cutPoint()) this.#rewindToLastRecord();
    return this.#streamEnd;
  }

  /** Freezes the open layer at the cut point (if it holds a complete record); returns that point. */
  #freezeOpen(): Lsn {
    const at = this.#cutPoint();
    if (at <= this.#open.start) return this.#open.start;
    const frozen = this.#open;
    this.#open = frozen.freezeAt(at);
    this.#openedAt = Date.now();
    this.#frozen.push({
      layer: frozen,
      meta: { ...this.#meta },
      nextRecordLsn: this.#nextRecordLsn,
      lastRecordEnd: this.#recordEnd,
    });
    this.#frozenBytes += frozen.size;
    this.#flushWork.advance(this.#flushWork.load() + 1);
    return at;
  }

  async #awaitRoom(token: CancellationToken): Promise<void> {
    while (
      this.#frozen.length > this.#maxFrozenLayers ||
      (this.#frozen.length > 1 && this.#frozenBytes > this.#maxFrozenBytes)
    ) {
      if (this.#state === "broken") this.#checkUsable();
      await this.#flushedCount.wait(this.#flushedCount.load() + 1, { token });
    }
  }

  /**
   * The flush task: writes frozen layers as files, oldest first, up to
   * `FLUSH_CONCURRENCY` at a time, and publishes each (index replaced, `diskConsistentLsn`
   * advanced) in order once its file is written: a layer's write into the page cache runs
   * while the one before it waits for its fsyncs. A failed write or publish breaks the
   * timeline; every write started is awaited before the task ends.
   */
  async #flushLoop(ctx: RequestContext): Promise<void> {
    let flushed = 0;
    /** Writes under way, oldest first: `writing[i]` is the file of `#frozen[i]`. */
    const writing: FlushWrite[] = [];
    try {
      while (true) {
        const seen = this.#flushWork.load();
        while (writing.length < FLUSH_CONCURRENCY && writing.length < this.#frozen.length) {
          writing.push(this.#startWrite(this.#frozen[writing.length]!, ctx.token));
        }
        const head = writing[0];
        if (head?.outcome !== undefined) {
          writing.shift();
          // Keep the next writes going while this one is published (its index write and
          // fsyncs): `#frozen[0]` is still head's layer, so `writing[i]` is `#frozen[i + 1]`'s.
          if (!("error" in head.outcome)) {
            while (writing.length < FLUSH_CONCURRENCY && writing.length + 1 < this.#frozen.length) {
              writing.push(this.#startWrite(this.#frozen[writing.length + 1]!, ctx.token));
            }
          }
          try {
            if ("error" in head.outcome) throw head.outcome.error;
            await this.#publish(head.item, head.outcome.disk, head.outcome.size, ctx.token);
          } catch (error) {
            if (error instanceof CancelledError) throw error;
            this.#state = "broken";
            this.#broken = error as Error;
            this.#lastRecord.shutdown(
              new TimelineStateError(this.id, "broken", (error as Error).message),
            );
            this.#disk.shutdown(
              new TimelineStateError(this.id, "broken", (error as Error).message),
            );
            this.#flushedCount.shutdown(
              new TimelineStateError(this.id, "broken", (error as Error).message),
            );
            throw error;
          }
          this.#frozen.shift();
          this.#frozenBytes -= head.item.layer.size;
          // Its memory goes back to the pool (once readers that pinned it are done).
          head.item.layer.dispose();
          flushed++;
          this.#flushedCount.advance(flushed);
          continue;
        }
        try {
          await this.#flushWork.wait(seen + 1, {
            token: ctx.token,
            // Nothing in flight: a quiet source's open layer is frozen once it is old enough.
            ...(writing.length === 0 ? { timeoutMs: this.#maxLayerAgeMs } : {}),
          });
        } catch (error) {
          if (error instanceof ShutdownError) return;
          if (!(error instanceof TimeoutError)) throw error;
          // A quiet source: make what arrived durable anyway, so the flush position reported to
          // the server (and a slot's restart point) keeps moving.
          if (
            this.#state === "active" &&
            !this.#ingestClosed &&
            Date.now() - this.#openedAt >= this.#maxLayerAgeMs
          ) {
            this.#freezeOpen();
          }
        }
      }
    } finally {
      // Their outcomes are recorded, never thrown: this only waits for them to end.
      for (const w of writing) await w.done;
    }
  }

  /** Starts writing `item`'s layer file; the outcome is recorded on the returned write. */
  #startWrite(item: Frozen, token: CancellationToken): FlushWrite {
    const w: FlushWrite = { item, outcome: undefined, done: Promise.resolve() };
    // Wakes the flush task, which may be waiting for this write (advancing never throws).
    const wake = () => this.#flushWork.advance(this.#flushWork.load() + 1);
    w.done = this.#writeFile(item, token).then(
      (written) => {
        w.outcome = written;
        wake();
      },
      (error: unknown) => {
        w.outcome = { error };
        wake();
      },
    );
    return w;
  }

  async #writeFile(
    item: Frozen,
    token: CancellationToken,
  ): Promise<{ disk: DiskLayer; size: number }> {
    const written = await this.#writeLayer(join(this.dir, "layers"), item.layer, item.meta, token, {
      fsync: this.#fsync,
      compression: this.#compression,
    });
    const disk = written.layer ?? (await DiskLayer.open(join(this.dir, "layers", written.name)));
    return { disk, size: written.size };
  }

  /** Lists a written layer file in the index (replaced atomically) and advances the LSNs. */
  async #publish(
    item: Frozen,
    disk: DiskLayer,
    size: number,
    token: CancellationToken,
  ): Promise<void> {
    const { layer, meta } = item;
    const entry: IndexedLayer = {
      file: basename(disk.path),
      start: layer.start,
      end: layer.end,
      size,
      records: layer.records.length,
      // The sorted table: one hash per relation fork, not one per run of it in WAL order.
      relFilter: relationFilter(disk.blocks),
    };
    const index: TimelineIndex = {
      ...this.#index,
      systemId: meta.systemId,
      pgVersion: meta.pgVersion,
      pgTimeline: meta.pgTimeline,
      diskConsistentLsn: layer.end,
      nextRecordLsn: item.nextRecordLsn,
      lastRecordEnd: item.lastRecordEnd,
      remoteConsistentLsn: this.#remote.load(),
      history: [...this.#history],
      layers: [...this.#index.layers, entry],
    };
    token.throwIfCancelled();
    await writeTimelineIndex(join(this.dir, "index.json"), index, { fsync: this.#fsync });
    this.#index = index;
    this.#slots.push(new LayerSlot(entry, disk.path, disk));
    this.#layersFlushed++;
    this.#disk.advance(layer.end);
  }

  /**
   * Freezes the open layer now (if it holds a complete record) without waiting: the
   * flush task writes it, and `diskConsistentLsn` moves when it has. Returns the LSN that
   * will then be durable. For a source that asks for a reply while it shuts down.
   *
   * @example
   * ```ts
   * // const willBeDurable = timeline.freeze();
   * ```
   */
  freeze(): Lsn {
    this.#checkUsable();
    return this.#freezeOpen();
  }

  /**
   * Freezes the open layer now and waits until everything ingested so far is durable
   * (`diskConsistentLsn >= lastRecordLsn`), on `ctx.token`.
   *
   * @example
   * ```ts
   * // await timeline.flush(ctx);
   * ```
   */
  async flush(ctx: RequestContext): Promise<void> {
    this.#checkUsable();
    const target = this.#freezeOpen();
    await this.#disk.wait(target, { token: ctx.token });
  }

  /**
   * Resolves once `lastRecordLsn >= lsn`. Throws `WaitLsnTimeoutError` (with the WAL
   * receiver's status) after `timeoutMs` (default 300 s), `TimelineShutdownError` when the
   * timeline shuts down, `TimelineStateError` when it is broken, `CancelledError` when
   * `ctx.token` is cancelled. Called from a task of this timeline's own WAL receiver, it
   * throws at once if it *would* wait: that task is what advances the LSN (a deadlock).
   *
   * @example
   * ```ts
   * // await timeline.waitLsn(0x16b3d88n, ctx, { timeoutMs: 10_000 });
   * ```
   */
  async waitLsn(
    lsn: Lsn,
    ctx: RequestContext,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    if (this.#state === "broken")
      throw new TimelineStateError(this.id, "broken", this.#broken?.message ?? "");
    if (this.#state !== "active") throw new TimelineShutdownError(this.id);
    if (!this.#lastRecord.wouldWait(lsn)) return;
    const receiver = this.#walReceiver;
    if (
      receiver !== undefined &&
      WAL_RECEIVER_KINDS.has(ctx.taskKind) &&
      ctx.token.isDescendantOf(receiver.token)
    ) {
      throw new Error(
        `Self-deadlock: ${ctx.taskKind} of timeline "${this.id}" would wait for ${formatLsn(lsn)}, which only it can bring`,
      );
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_LSN_TIMEOUT_MS;
    try {
      await this.#lastRecord.wait(lsn, { token: ctx.token, timeoutMs });
    } catch (error) {
      if (error instanceof TimeoutError) {
        throw new WaitLsnTimeoutError(
          timeoutMs,
          lsn,
          this.#lastRecord.load(),
          this.walReceiverStatus(),
        );
      }
      if (error instanceof ShutdownError) throw new TimelineShutdownError(this.id);
      throw error;
    }
  }

  /** The layers holding `[from, to)`, oldest first (a snapshot). */
  #layersFor(from: Lsn, to: Lsn): AnyLayer[] {
    const out: AnyLayer[] = [];
    for (const slot of this.#slots)
      if (slot.entry.end > from && slot.entry.start < to) out.push({ kind: "disk", slot });
    for (const f of this.#frozen) {
      if (f.layer.end > from && f.layer.start < to && f.layer.end > this.#disk.load())
        out.push({ kind: "memory", layer: f.layer });
    }
    if (this.#open.end > from && this.#open.start < to)
      out.push({ kind: "memory", layer: this.#open });
    return out;
  }

  /**
   * {@linkcode #layersFor} for a read that awaits between layers: the in-memory layers are
   * pinned until the snapshot is disposed, so that a flush meanwhile does not give their
   * memory back to the pool while they are still to be read.
   */
  #snapshot(from: Lsn, to: Lsn): { layers: AnyLayer[] } & Disposable {
    const layers = this.#layersFor(from, to);
    for (const l of layers) if (l.kind === "memory") l.layer.pin();
    let disposed = false;
    return {
      layers,
      [Symbol.dispose]() {
        if (disposed) return;
        disposed = true;
        for (const l of layers) if (l.kind === "memory") l.layer.unpin();
      },
    };
  }

  #checkRange(from: Lsn, to: Lsn): void {
    if (from > to)
      throw new RangeError(`WAL range ${formatLsn(from)}..${formatLsn(to)} ends before it starts`);
    if (from < this.#index.startLsn || to > this.#streamEnd) {
      throw new RangeError(
        `WAL range ${formatLsn(from)}..${formatLsn(to)} is outside what timeline "${this.id}" holds (${formatLsn(this.#index.startLsn)}..${formatLsn(this.#streamEnd)})`,
      );
    }
  }

  /**
   * Yields the raw WAL bytes of `[from, to)` in pieces, byte-exact with the source's
   * pg_wal (page headers included). The range must lie within what was received.
   *
   * @example
   * ```ts
   * // for await (const piece of timeline.walRange(from, to, ctx)) out.write(piece);
   * ```
   */
  async *walRange(from: Lsn, to: Lsn, ctx: RequestContext): AsyncGenerator<Buffer> {
    this.#checkRange(from, to);
    using _guard = this.gate.enter("read WAL");
    let a = from;
    // A layer of the snapshot can shrink while it is read: the open layer, frozen meanwhile,
    // keeps only the bytes up to its cut point, and the rest moves to a new open layer. So
    // the bytes still missing are looked up again, until all of [from, to) is read.
    while (a < to) {
      const before = a;
      using snapshot = this.#snapshot(a, to);
      for (const layer of snapshot.layers) {
        const entry = await this.#hold(layer, ctx);
        try {
          const l = entry.layer;
          if (l.end <= a) continue;
          if (l.start > a) {
            throw new Error(
              `Timeline "${this.id}": no layer holds ${formatLsn(a)} (the next starts at ${formatLsn(l.start)})`,
            );
          }
          while (a < to && a < l.end) {
            ctx.throwIfCancelled();
            const b = to < l.end ? to : l.end;
            const stop = b - a > 8n << 20n ? a + (8n << 20n) : b;
            yield entry.kind === "disk"
              ? await entry.layer.read(a, stop)
              : entry.layer.read(a, stop);
            a = stop;
          }
        } finally {
          entry.release();
        }
      }
      if (a === before) {
        throw new Error(
          `Timeline "${this.id}": no layer holds ${formatLsn(a)} of ${formatLsn(from)}..${formatLsn(to)}`,
        );
      }
    }
  }

  /**
   * The raw WAL bytes of `[from, to)` in one buffer.
   *
   * @example
   * ```ts
   * // const bytes = await timeline.readWal(0x1000000n, 0x1002000n, ctx);
   * ```
   */
  async readWal(from: Lsn, to: Lsn, ctx: RequestContext): Promise<Buffer> {
    const pieces: Buffer[] = [];
    for await (const piece of this.walRange(from, to, ctx)) pieces.push(piece);
    return Buffer.concat(pieces);
  }

  async #decodeRows(
    entry: HeldLayer,
    rows: number[],
    records: RecordTable,
  ): Promise<DumpRecordJson[]> {
    const out: DumpRecordJson[] = [];
    const version = checkVersion(this.#meta.pgVersion);
    // One read for the batch when its records lie close together (a disk read checks whole
    // 1 MiB chunks: reading record by record would check the same chunk again and again).
    const first = records.lsn[rows[0] ?? 0] ?? 0n;
    const last = lsnMin(records.end[rows[rows.length - 1] ?? 0] ?? 0n, entry.layer.end);
    const span =
      rows.length > 1 && last > first && last - first <= 8n << 20n
        ? entry.kind === "disk"
          ? await entry.layer.read(first, last)
          : entry.layer.read(first, last)
        : undefined;
    for (const row of rows) {
      const lsn = records.lsn[row]!;
      // A record's end includes its alignment padding (a switch's, the rest of its segment),
      // which may lie past the layer when the layer was cut there; its bytes never do.
      const end = lsnMin(records.end[row]!, entry.layer.end);
      const bytes =
        span !== undefined
          ? span.subarray(Number(lsn - first), Number(end - first))
          : entry.kind === "disk"
            ? await entry.layer.read(lsn, end)
            : entry.layer.read(lsn, end);
      const dec = new WalDecoder({
        startLsn: lsn,
        segmentSize: this.#index.segmentSize,
        majorVersion: version,
      });
      dec.push(bytes);
      dec.end();
      const rec = dec.next();
      if (rec === undefined)
        throw new LayerCorruptError(this.dir, `no record at ${formatLsn(lsn)}`);
      out.push(recordToJson(rec, version));
    }
    return out;
  }

  /**
   * Yields the decoded records that start in `[from, to)`, as `waldump --json` prints
   * them; with `block`, only records touching that relation block.
   *
   * @example
   * ```ts
   * // for await (const r of timeline.records(from, to, ctx)) console.log(r.type);
   * ```
   */
  async *records(
    from: Lsn,
    to: Lsn,
    ctx: RequestContext,
    block?: BlockKey,
  ): AsyncGenerator<DumpRecordJson> {
    if (from > to)
      throw new RangeError(
        `Record range ${formatLsn(from)}..${formatLsn(to)} ends before it starts`,
      );
    using _guard = this.gate.enter("read records");
    using snapshot = this.#snapshot(from, to);
    for (const layer of snapshot.layers) {
      ctx.throwIfCancelled();
      const entry = await this.#hold(layer, ctx);
      try {
        const { records, blocks } = entry.layer as { records: RecordTable; blocks: BlockTable };
        let rows: number[];
        if (block === undefined) {
          rows = [];
          for (let i = records.lowerBound(from); i < records.length && records.lsn[i]! < to; i++)
            rows.push(i);
        } else {
          rows = blocks
            .find(block)
            .map((b) => blocks.record[b]!)
            .filter((r) => records.lsn[r]! >= from && records.lsn[r]! < to);
          rows = [...new Set(rows)].sort((a, b) => a - b);
        }
        for (let i = 0; i < rows.length; i += 256) {
          yield* await this.#decodeRows(entry, rows.slice(i, i + 256), records);
        }
      } finally {
        entry.release();
      }
    }
  }

  /**
   * The history of one relation block up to `upTo`: the newest record at or before it
   * that carries a full-page image of the block (or initializes the page), then every
   * later record touching the block. Served from the block indexes; no layer is scanned.
   *
   * @example
   * ```ts
   * // const h = await timeline.blockHistory({ spc: 1663, db: 5, rel: 16384, fork: 0, blk: 0 }, lsn, ctx);
   * ```
   */
  async blockHistory(key: BlockKey, upTo: Lsn, ctx: RequestContext): Promise<BlockHistory> {
    using _guard = this.gate.enter("block history");
    // Layers with hits stay held (a disk layer pinned) until their records are decoded.
    const held: HeldLayer[] = [];
    try {
      return await this.#blockHistory(key, upTo, ctx, held);
    } finally {
      for (const h of held) h.release();
    }
  }

  async #blockHistory(
    key: BlockKey,
    upTo: Lsn,
    ctx: RequestContext,
    held: HeldLayer[],
  ): Promise<BlockHistory> {
    const hits: { entry: HeldLayer; row: number; base: boolean; lsn: Lsn }[] = [];
    using snapshot = this.#snapshot(this.#index.startLsn, upTo + 1n);
    for (const layer of snapshot.layers) {
      ctx.throwIfCancelled();
      // An evicted layer whose relation filter rules the block's relation out stays remote.
      if (
        layer.kind === "disk" &&
        !layer.slot.resident &&
        !mayTouchRelation(layer.slot.entry.relFilter, key)
      )
        continue;
      const entry = await this.#hold(layer, ctx);
      const before = hits.length;
      const { records, blocks } = entry.layer as { records: RecordTable; blocks: BlockTable };
      for (const b of blocks.find(key)) {
        const row = blocks.record[b]!;
        const lsn = records.lsn[row]!;
        if (lsn > upTo) continue;
        const f = blocks.flags[b]!;
        const base =
          ((f & BLOCK_HAS_IMAGE) !== 0 && (f & BLOCK_APPLY_IMAGE) !== 0) ||
          (f & BLOCK_WILL_INIT) !== 0;
        const prev = hits[hits.length - 1];
        if (prev !== undefined && prev.lsn === lsn) prev.base ||= base;
        else hits.push({ entry, row, base, lsn });
      }
      if (hits.length > before) held.push(entry);
      else entry.release();
    }
    let first = 0;
    for (let i = hits.length - 1; i >= 0; i--) {
      if (hits[i]!.base) {
        first = i;
        break;
      }
    }
    const records: DumpRecordJson[] = [];
    // Decode layer by layer (hits are in LSN order, so a layer's hits are consecutive).
    const chosen = hits.slice(first);
    for (let i = 0; i < chosen.length; ) {
      ctx.throwIfCancelled();
      const entry = chosen[i]!.entry;
      let j = i;
      while (j < chosen.length && chosen[j]!.entry.layer === entry.layer) j++;
      const table = (entry.layer as { records: RecordTable }).records;
      const rows = chosen.slice(i, j).map((h) => h.row);
      records.push(...(await this.#decodeRows(entry, rows, table)));
      i = j;
    }
    return { hasBaseImage: hits[first]?.base ?? false, records };
  }

  /**
   * Shuts the timeline down.
   * - `hard`: cancel its token and close its gate. Unflushed in-memory WAL is dropped
   *   (it will be streamed again); nothing durable is lost or corrupted.
   * - `freeze-and-flush`: stop the WAL receiver and wait for it, freeze the open layer,
   *   flush every frozen layer, then cancel and close. Afterwards
   *   `diskConsistentLsn == lastRecordLsn`, and no WAL was ingested once the flush began.
   * A second call waits for the first; `hard` during a freeze-and-flush cuts it short.
   *
   * @example
   * ```ts
   * // const { diskConsistentLsn } = await timeline.shutdown("freeze-and-flush");
   * ```
   */
  shutdown(mode: ShutdownMode): Promise<ShutdownResult> {
    if (mode !== "hard" && mode !== "freeze-and-flush") {
      throw new TypeError(
        `Unknown shutdown mode ${JSON.stringify(mode)}: expected "hard" or "freeze-and-flush"`,
      );
    }
    if (this.#shutdown !== undefined) {
      if (mode === "hard" && this.#shutdownMode === "freeze-and-flush") {
        this.#shutdownMode = "hard";
        this.cancel.cancel("hard shutdown");
      }
      return this.#shutdown;
    }
    this.#shutdownMode = mode;
    this.#shutdown = this.#runShutdown(mode);
    return this.#shutdown;
  }

  async #runShutdown(mode: ShutdownMode): Promise<ShutdownResult> {
    if (this.#state === "active") this.#state = "stopping";
    if (mode === "freeze-and-flush" && this.#broken === undefined && !this.#readOnly) {
      try {
        await this.stopWalReceiver();
        this.#ingestClosed = true;
        const target = this.#freezeOpen();
        await this.#disk.wait(target, { token: this.cancel });
        for (const barrier of this.#flushBarriers) await barrier(this.cancel);
        // Uploads that finished after the last flush: keep their progress, so the next
        // start does not upload them again.
        if (this.#remote.load() > this.#index.remoteConsistentLsn) {
          this.#index = { ...this.#index, remoteConsistentLsn: this.#remote.load() };
          await writeTimelineIndex(join(this.dir, "index.json"), this.#index, {
            fsync: this.#fsync,
          });
        }
      } catch (error) {
        // A hard shutdown cut the flush short: fall through to the hard path.
        if (!(error instanceof CancelledError) || this.#shutdownMode !== "hard") throw error;
      }
    }
    this.#ingestClosed = true;
    this.cancel.cancel(`${this.#shutdownMode} shutdown`);
    this.#lastRecord.shutdown(new TimelineShutdownError(this.id));
    this.#disk.shutdown(new TimelineShutdownError(this.id));
    this.#flushWork.shutdown();
    this.#flushedCount.shutdown(new TimelineShutdownError(this.id));
    await this.gate.close();
    // Joined so its end is accounted for; a failed flush already marked the timeline broken.
    await this.#flushTask?.join();
    await this.#releaseLock?.();
    this.#releaseLock = undefined;
    if (this.#state !== "broken") this.#state = "stopped";
    return {
      mode: this.#shutdownMode ?? mode,
      lastRecordLsn: this.#lastRecord.load(),
      diskConsistentLsn: this.#disk.load(),
      remoteConsistentLsn: this.#remote.load(),
    };
  }
}

function positive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new RangeError(`${what} must be a positive integer, got ${n}`);
  return n;
}
