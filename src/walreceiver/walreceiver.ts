/**
 * The WAL receiver of one timeline: its manager task (which runs the connection
 * handler and poller), under the timeline's WAL-receiver token and child gate.
 *
 * @module
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawn, type Task, TaskKind, type TaskRegistry } from "../lifecycle/index.js";
import type { Timeline } from "../timeline/index.js";
import { fsyncDir } from "../timeline/index.js";
import { formatLsn, type Lsn } from "../wal/index.js";
import { parseSource, type Source } from "./conninfo.js";
import { type ManagerOptions, type ManagerState, newManagerState, runManager } from "./manager.js";
import type { SwitchReason } from "./status.js";

/** Options of {@linkcode WalReceiver.start}. */
export interface WalReceiverOptions extends ManagerOptions {
  /** Connection strings of the sources (a primary and standbys of one cluster). */
  sources: readonly string[];
  /** Where the manager's task registers. */
  registry?: TaskRegistry;
}

/** What the WAL receiver reports to operators (no password anywhere). */
export interface WalReceiverStatus {
  /** The source streaming now, if any. */
  source: string | undefined;
  connected: boolean;
  /** The source's flush LSN, last seen. */
  sourceFlushLsn: string | undefined;
  lastMessageAt: string | undefined;
  lastWalAt: string | undefined;
  switches: Partial<Record<SwitchReason, number>>;
  connectionAttempts: number;
  connectionFailures: number;
  sources: {
    source: string;
    flushLsn: string | undefined;
    failures: number;
    lastError: string | undefined;
  }[];
}

/**
 * A running WAL receiver. {@linkcode stop} cancels it and waits for exactly its tasks
 * (the timeline's WAL-receiver child gate), leaving the timeline open.
 *
 * @example
 * ```ts
 * import { WalReceiver } from "tideline/walreceiver";
 * // const receiver = WalReceiver.start(timeline, { sources: ["postgres://postgres@127.0.0.1:5432/postgres"] });
 * // await timeline.waitLsn(lsn, ctx);
 * // await receiver.stop();
 * ```
 */
export class WalReceiver {
  readonly timeline: Timeline;
  /** The manager task. */
  readonly task: Task<void>;
  readonly #state: ManagerState;

  private constructor(timeline: Timeline, state: ManagerState, task: Task<void>) {
    this.timeline = timeline;
    this.#state = state;
    this.task = task;
  }

  /** Starts the manager under the timeline's WAL-receiver scope. */
  static start(timeline: Timeline, options: WalReceiverOptions): WalReceiver {
    if (options.sources.length === 0)
      throw new TypeError("A WAL receiver needs at least one source");
    const sources: Source[] = options.sources.map(parseSource);
    const state = newManagerState(sources);
    const { token, gate } = timeline.walReceiverScope();
    const task = spawn(
      {
        token,
        gate,
        registry: options.registry,
        name: `walreceiver manager ${timeline.id}`,
        kind: TaskKind.WalReceiverManager,
      },
      (ctx) =>
        runManager(timeline, state, gate, ctx, {
          ...options,
          onTimelineHistory: async (filename, content) => {
            const path = join(timeline.dir, filename);
            await writeFile(path, content);
            await fsyncDir(timeline.dir);
          },
        }),
    );
    const receiver = new WalReceiver(timeline, state, task);
    timeline.walReceiverStatus = () => receiver.describe();
    return receiver;
  }

  /** A snapshot of the receiver's state. */
  status(): WalReceiverStatus {
    const cur = this.#state.current;
    const iso = (ms: number | undefined) =>
      ms === undefined ? undefined : new Date(ms).toISOString();
    const lsn = (l: Lsn | undefined) => (l === undefined ? undefined : formatLsn(l));
    return {
      source: cur?.candidate.source.display,
      connected: cur?.status.isConnected ?? false,
      sourceFlushLsn: lsn(cur?.status.sourceFlushLsn),
      lastMessageAt: iso(cur?.status.lastMessageAt),
      lastWalAt: iso(cur?.status.lastWalAt),
      switches: Object.fromEntries(this.#state.switches),
      connectionAttempts: this.#state.connectionAttempts,
      connectionFailures: this.#state.connectionFailures,
      sources: this.#state.candidates.map((c) => ({
        source: c.source.display,
        flushLsn: lsn(c.flushLsn),
        failures: c.failures,
        lastError: c.lastError,
      })),
    };
  }

  /** One line for logs and `waitLsn` timeouts. */
  describe(): string {
    const s = this.status();
    if (this.#state.fatal !== undefined) return `stopped: ${this.#state.fatal.message}`;
    if (s.source === undefined) {
      const errors = s.sources
        .filter((c) => c.lastError !== undefined)
        .map((c) => `${c.source}: ${c.lastError}`);
      return `not connected${errors.length > 0 ? ` (${errors.join("; ")})` : ""}`;
    }
    return `${s.connected ? "streaming from" : "connecting to"} ${s.source}, source flush ${s.sourceFlushLsn ?? "?"}, last message ${s.lastMessageAt ?? "never"}`;
  }

  /** Stops the WAL receiver and waits for all of its tasks. */
  async stop(): Promise<void> {
    await this.timeline.stopWalReceiver();
  }
}
