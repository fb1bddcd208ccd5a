/**
 * The WAL receiver manager: chooses a source, runs its connection, and switches by
 * Neon's rules when another source is better.
 *
 * @module
 */
import {
  CancelledError,
  type Gate,
  JoinSet,
  type RequestContext,
  sleep,
  spawn,
  type Task,
  TaskKind,
} from "../lifecycle/index.js";
import type { Timeline } from "../timeline/index.js";
import type { Lsn } from "../wal/index.js";
import { type ConnectionOptions, runConnection } from "./connection_handler.js";
import type { Source } from "./conninfo.js";
import { SystemIdMismatchError, TimelineDivergedError } from "./errors.js";
import { ReplicationConnection, type StreamEnd } from "./replication_connection.js";
import { newConnectionStatus, type SwitchReason, type WalConnectionStatus } from "./status.js";

/** Settings of the manager; defaults are Neon's. */
export interface ManagerOptions extends Omit<ConnectionOptions, "pgTimeline"> {
  /** No message (WAL or keepalive) for this long: reconnect. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** New WAL exists elsewhere but none arrived for this long: switch. Default 10 000 ms. */
  laggingWalTimeoutMs?: number;
  /** A candidate this many bytes ahead: switch. Default 1 GiB. */
  maxLsnWalLag?: bigint;
  /** How often other sources are probed (IDENTIFY_SYSTEM). Default 5 000 ms. */
  probeIntervalMs?: number;
  /** How often the current connection is checked. Default 500 ms. */
  checkIntervalMs?: number;
  /** Retry backoff per source: first delay, factor, cap. Default 100 ms, 1.5, 15 000 ms. */
  retry?: { minMs: number; factor: number; maxMs: number };
  /** Told what the manager does, for logs: called synchronously, must not throw. */
  onEvent?: ((event: WalReceiverEvent) => void) | undefined;
}

/** Something an operator wants in the logs: a connection starting, failing or ending. */
export type WalReceiverEvent =
  | { type: "connecting"; source: string; reason: SwitchReason }
  | { type: "switching"; source: string; reason: SwitchReason }
  | { type: "connectionFailed"; source: string; error: string; retryInMs: number }
  | { type: "timelineEnded"; source: string; nextTimeline: number | undefined }
  | { type: "gaveUp"; error: string };

/** What the manager knows of one source. */
export interface CandidateState {
  readonly source: Source;
  /** The source's flush LSN, last seen (probe or stream). */
  flushLsn: Lsn | undefined;
  /** When it was last heard from, ms since the epoch. */
  seenAt: number | undefined;
  /** Consecutive failures; cleared once WAL flows from it. */
  failures: number;
  /** Not to be used before this time (ms since the epoch); Infinity when refused for good. */
  retryAt: number;
  /** Why it last failed. */
  lastError: string | undefined;
}

/** Live state shared by the manager with the WAL receiver's status. */
export interface ManagerState {
  readonly candidates: CandidateState[];
  current:
    | {
        candidate: CandidateState;
        status: WalConnectionStatus;
        task: Task<StreamEnd>;
        startedAt: number;
      }
    | undefined;
  readonly switches: Map<SwitchReason, number>;
  connectionAttempts: number;
  connectionFailures: number;
  /** The PostgreSQL timeline to stream next (set when a source's timeline ended). */
  pgTimeline: number | undefined;
  /** Why the receiver cannot go on (e.g. every source refused), if so. */
  fatal: Error | undefined;
}

/**
 * A fresh state for these sources.
 *
 * @example
 * ```ts
 * import { newManagerState, parseSource } from "tideline/walreceiver";
 * const state = newManagerState([parseSource("postgres://postgres@127.0.0.1:5432/postgres")]);
 * ```
 */
export function newManagerState(sources: readonly Source[]): ManagerState {
  return {
    candidates: sources.map((source) => ({
      source,
      flushLsn: undefined,
      seenAt: undefined,
      failures: 0,
      retryAt: 0,
      lastError: undefined,
    })),
    current: undefined,
    switches: new Map(),
    connectionAttempts: 0,
    connectionFailures: 0,
    pgTimeline: undefined,
    fatal: undefined,
  };
}

/** Waits until `task` ends or `ms` pass or `token` is cancelled; says which. */
function waitForEnd<T>(task: Task<T>, ms: number, ctx: RequestContext): Promise<"ended" | "tick"> {
  if (task.isFinished) return Promise.resolve("ended");
  return new Promise((resolve) => {
    let settled = false;
    const done = (what: "ended" | "tick") => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      registration[Symbol.dispose]();
      resolve(what);
    };
    const timer = setTimeout(() => done("tick"), ms);
    const registration = ctx.token.onCancel(() => done("tick"));
    task.onEnded(() => done("ended"));
  });
}

/**
 * The manager's body. Runs until its token is cancelled; on the way out it stops the
 * current connection and its probes (they are its child tasks).
 *
 * @example
 * ```ts
 * // spawn({ token, gate, name: "walreceiver manager", kind: TaskKind.WalReceiverManager },
 * //   (ctx) => runManager(timeline, state, gate, ctx, {}));
 * ```
 */
export async function runManager(
  timeline: Timeline,
  state: ManagerState,
  gate: Gate,
  ctx: RequestContext,
  options: ManagerOptions = {},
): Promise<void> {
  const connectTimeout = options.connectTimeoutMs ?? 10_000;
  const laggingWalTimeout = options.laggingWalTimeoutMs ?? 10_000;
  const maxLag = options.maxLsnWalLag ?? 1n << 30n;
  const probeInterval = options.probeIntervalMs ?? 5_000;
  const checkInterval = options.checkIntervalMs ?? 500;
  const retry = options.retry ?? { minMs: 100, factor: 1.5, maxMs: 15_000 };
  await using probes = new JoinSet<void>({ token: ctx.token, gate, parent: ctx });
  let lastProbe = 0;
  let reason: SwitchReason = "NoExistingConnection";

  const emit = (event: WalReceiverEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A logging hook must not stop the WAL receiver.
    }
  };
  const count = (r: SwitchReason) => state.switches.set(r, (state.switches.get(r) ?? 0) + 1);

  const probe = () => {
    lastProbe = Date.now();
    for (const c of state.candidates) {
      if (c === state.current?.candidate || c.retryAt === Number.POSITIVE_INFINITY) continue;
      probes.spawn(`probe ${c.source.address}`, TaskKind.Background, async (pctx) => {
        try {
          const conn = await ReplicationConnection.connect(
            c.source,
            pctx.token,
            Math.min(connectTimeout, 5_000),
          );
          try {
            const id = await conn.identifySystem(pctx.token);
            if (timeline.systemId !== 0n && id.systemId !== timeline.systemId) {
              throw new SystemIdMismatchError(c.source.display, timeline.systemId, id.systemId);
            }
            c.flushLsn = id.xlogpos;
            c.seenAt = Date.now();
          } finally {
            await conn.close();
          }
        } catch (error) {
          if (error instanceof CancelledError) throw error;
          c.lastError = (error as Error).message;
          if (error instanceof SystemIdMismatchError) c.retryAt = Number.POSITIVE_INFINITY;
        }
      });
    }
  };

  const choose = (): CandidateState | undefined => {
    const now = Date.now();
    const usable = state.candidates.filter((c) => c.retryAt <= now);
    // Highest known flush LSN first; unknown ones keep their given order after known ones.
    usable.sort((a, b) => {
      if (a.flushLsn === undefined || b.flushLsn === undefined)
        return a.flushLsn === undefined ? 1 : -1;
      return a.flushLsn > b.flushLsn ? -1 : a.flushLsn < b.flushLsn ? 1 : 0;
    });
    return usable[0];
  };

  const backoff = (c: CandidateState) =>
    Math.min(retry.maxMs, retry.minMs * retry.factor ** (c.failures - 1));

  const stopCurrent = async (why: SwitchReason) => {
    const cur = state.current;
    if (cur === undefined) return;
    reason = why;
    if (why !== "NoExistingConnection")
      emit({ type: "switching", source: cur.candidate.source.display, reason: why });
    cur.task.cancel(`switching: ${why}`);
    await cur.task.join();
    // Settled here, so the loop does not take the manager's own cancellation for a
    // connection failure (which would count the switch as ConnectionFailed).
    state.current = undefined;
    if (cur.status.hasProcessedWal) cur.candidate.failures = 0;
    if (why === "NoKeepAlives") {
      // The source went silent: it waits its backoff like a failed one.
      state.connectionFailures++;
      const c = cur.candidate;
      c.failures++;
      c.lastError = `no message for ${connectTimeout} ms`;
      c.retryAt = Date.now() + backoff(c);
    }
  };

  while (!ctx.token.isCancelled) {
    // Collect finished probes (their findings and errors are recorded on the candidate).
    while (probes.tryJoinNext() !== undefined) {}
    if (state.candidates.length > 1 && Date.now() - lastProbe >= probeInterval) probe();

    if (state.current === undefined) {
      const candidate = choose();
      if (candidate === undefined) {
        const next = Math.min(...state.candidates.map((c) => c.retryAt));
        if (next === Number.POSITIVE_INFINITY) {
          state.fatal = new Error(
            `No usable WAL source: ${state.candidates.map((c) => `${c.source.display}: ${c.lastError ?? "refused"}`).join("; ")}`,
          );
          emit({ type: "gaveUp", error: state.fatal.message });
          throw state.fatal;
        }
        await sleep(Math.max(10, Math.min(next - Date.now(), checkInterval * 4)), ctx.token);
        continue;
      }
      const status = newConnectionStatus(candidate.source.display, candidate.source.address);
      const task = spawn(
        {
          token: ctx.token,
          gate,
          parent: ctx,
          name: `connection ${candidate.source.address}`,
          kind: TaskKind.WalReceiverConnectionHandler,
        },
        (hctx) =>
          runConnection(timeline, candidate.source, status, gate, hctx, {
            ...options,
            pgTimeline: state.pgTimeline,
          }),
      );
      state.current = { candidate, status, task, startedAt: Date.now() };
      emit({ type: "connecting", source: candidate.source.display, reason });
      state.connectionAttempts++;
      count(reason);
      continue;
    }

    const cur = state.current;
    if ((await waitForEnd(cur.task, checkInterval, ctx)) === "ended") {
      const outcome = await cur.task.join();
      state.current = undefined;
      if (cur.status.hasProcessedWal) cur.candidate.failures = 0;
      if (outcome.status === "succeeded") {
        // The source's timeline ended: go on at once on the next one.
        if (outcome.value.nextTimeline !== undefined) state.pgTimeline = outcome.value.nextTimeline;
        emit({
          type: "timelineEnded",
          source: cur.candidate.source.display,
          nextTimeline: outcome.value.nextTimeline,
        });
        reason = "TimelineEnded";
        continue;
      }
      if (outcome.status === "cancelled" && ctx.token.isCancelled) break;
      state.connectionFailures++;
      const c = cur.candidate;
      c.failures++;
      c.lastError = outcome.status === "failed" ? (outcome.error as Error).message : "cancelled";
      c.retryAt =
        outcome.status === "failed" &&
        (outcome.error instanceof SystemIdMismatchError ||
          outcome.error instanceof TimelineDivergedError)
          ? Number.POSITIVE_INFINITY
          : Date.now() + backoff(c);
      emit({
        type: "connectionFailed",
        source: c.source.display,
        error: c.lastError,
        retryInMs: Math.max(0, c.retryAt - Date.now()),
      });
      reason = "ConnectionFailed";
      continue;
    }
    if (cur.status.hasProcessedWal && cur.candidate.failures > 0) cur.candidate.failures = 0;
    if (cur.status.sourceFlushLsn !== undefined) {
      cur.candidate.flushLsn = cur.status.sourceFlushLsn;
      cur.candidate.seenAt = Date.now();
    }

    // Neon's rules, in order.
    const now = Date.now();
    const heard = cur.status.lastMessageAt ?? cur.startedAt;
    if (cur.status.isConnected && now - heard > connectTimeout) {
      await stopCurrent("NoKeepAlives");
      continue;
    }
    if (!cur.status.isConnected) continue;
    const others = state.candidates.filter(
      (c) => c !== cur.candidate && c.retryAt <= now && c.flushLsn !== undefined,
    );
    const best = others.sort((a, b) => (a.flushLsn! > b.flushLsn! ? -1 : 1))[0];
    const currentFlush = cur.status.sourceFlushLsn ?? 0n;
    if (best !== undefined && best.flushLsn! - currentFlush >= maxLag) {
      await stopCurrent("LaggingWal");
      continue;
    }
    const received = cur.status.streamingLsn ?? 0n;
    const newWalSomewhere = currentFlush > received || (best?.flushLsn ?? 0n) > received;
    const lastWal = cur.status.lastWalAt ?? cur.startedAt;
    if (
      best !== undefined &&
      newWalSomewhere &&
      (best.flushLsn ?? 0n) > received &&
      now - lastWal > laggingWalTimeout
    ) {
      await stopCurrent("NoWalTimeout");
    }
  }
  await stopCurrent("NoExistingConnection");
}
