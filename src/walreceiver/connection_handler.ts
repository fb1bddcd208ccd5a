/**
 * The connection handler: the task that runs one replication connection.
 *
 * @module
 */
import {
  Channel,
  ChannelClosedError,
  type Gate,
  type RequestContext,
  spawn,
  TaskKind,
} from "../lifecycle/index.js";
import { type Timeline, walBuffers } from "../timeline/index.js";
import { type Lsn, parseLsn } from "../wal/index.js";
import { type FeedbackPositions, pollConnection, type WalPiece } from "./connection_poller.js";
import type { Source } from "./conninfo.js";
import { SourceError, SystemIdMismatchError, TimelineDivergedError } from "./errors.js";
import { ReplicationConnection, type StreamEnd } from "./replication_connection.js";
import type { WalConnectionStatus } from "./status.js";

/** Options of {@linkcode runConnection}. */
export interface ConnectionOptions {
  /** Stream through this physical replication slot. */
  slot?: string | undefined;
  /** Create the slot if it does not exist. */
  createSlot?: boolean | undefined;
  /** Stream this PostgreSQL timeline (after a switch). Default: the timeline's own. */
  pgTimeline?: number | undefined;
  /** Connection timeout, ms. Default 10 000. */
  connectTimeoutMs?: number | undefined;
  /** Status update interval, ms. Default 10 000. */
  statusIntervalMs?: number | undefined;
  /** The apply position to report (remote-consistent LSN). Default: the flush position. */
  applyLsn?: (() => Lsn) | undefined;
  /** Called with a new PostgreSQL timeline's history file when the source's timeline ends. */
  onTimelineHistory?: ((filename: string, content: string) => Promise<void>) | undefined;
}

/**
 * `a` and `b` as one piece when `b` continues `a`, in the WAL and in memory (the same pooled
 * slab, right after it); `b`'s pool reference is then given back (the slab keeps `a`'s).
 * Otherwise `undefined`, and both stay as they are.
 */
function joinPieces(a: WalPiece, b: WalPiece): WalPiece | undefined {
  if (
    b.lsn !== a.lsn + BigInt(a.data.length) ||
    b.data.buffer !== a.data.buffer ||
    b.data.byteOffset !== a.data.byteOffset + a.data.length
  ) {
    return undefined;
  }
  const data = Buffer.from(a.data.buffer, a.data.byteOffset, a.data.length + b.data.length);
  walBuffers.release(b.data);
  return { lsn: a.lsn, data };
}

/** Capacity of the channel between poller and handler. */
const CHANNEL_PIECES = 256;
const CHANNEL_BYTES = 16 << 20;

/**
 * Runs one replication connection from `source` into `timeline`: connects,
 * `IDENTIFY_SYSTEM` (refusing another cluster), optionally reads or creates the slot,
 * `START_REPLICATION PHYSICAL` at the end of the timeline's stream, spawns the poller
 * (a child task under the same WAL-receiver gate) and ingests what it receives. Returns
 * how the stream ended (a timeline switch) or throws why it failed.
 *
 * @example
 * ```ts
 * // spawn({ token, gate, name: `connection ${source.address}`, kind: TaskKind.WalReceiverConnectionHandler },
 * //   (ctx) => runConnection(timeline, source, status, gate, ctx, { slot: "tideline" }));
 * ```
 */
export async function runConnection(
  timeline: Timeline,
  source: Source,
  status: WalConnectionStatus,
  gate: Gate,
  ctx: RequestContext,
  options: ConnectionOptions = {},
): Promise<StreamEnd> {
  const conn = await ReplicationConnection.connect(source, ctx.token, options.connectTimeoutMs);
  try {
    const id = await conn.identifySystem(ctx.token);
    status.sourceFlushLsn = id.xlogpos;
    status.lastMessageAt = Date.now();
    if (timeline.systemId !== 0n && id.systemId !== timeline.systemId) {
      throw new SystemIdMismatchError(source.display, timeline.systemId, id.systemId);
    }
    if (options.slot !== undefined) {
      const slot = await conn.readReplicationSlot(options.slot, ctx.token);
      if (slot === undefined) {
        if (!options.createSlot) {
          throw new SourceError(
            source.display,
            `replication slot "${options.slot}" does not exist`,
            "42704",
          );
        }
        await conn.createPhysicalSlot(options.slot, ctx.token);
      } else if (slot.slotType !== "physical") {
        throw new SourceError(
          source.display,
          `replication slot "${options.slot}" is ${slot.slotType}, not physical`,
        );
      }
    }
    // Report well within the server's wal_sender_timeout, whatever the configured interval.
    const senderTimeout = await conn.walSenderTimeoutMs(ctx.token);
    const configuredInterval = options.statusIntervalMs ?? 10_000;
    const statusIntervalMs =
      senderTimeout !== undefined && senderTimeout > 0
        ? Math.max(100, Math.min(configuredInterval, Math.floor(senderTimeout / 4)))
        : configuredInterval;
    const start = timeline.streamEnd;
    const pgTimeline =
      options.pgTimeline ?? (timeline.pgVersion !== 0 ? timeline.pgTimeline : id.timeline);
    if (pgTimeline < id.timeline) {
      // The source has moved on to a later timeline: where did ours end in its history?
      // If before the WAL we hold, the histories diverged and no retry can help.
      const history = await conn.timelineHistory(id.timeline, ctx.token);
      const switchLsn = timelineEnd(history.content, pgTimeline);
      if (switchLsn === undefined || timeline.lastRecordLsn > switchLsn) {
        throw new TimelineDivergedError(
          source.display,
          pgTimeline,
          switchLsn ?? 0n,
          timeline.lastRecordLsn,
        );
      }
    }
    const stream = conn.startReplication(
      { lsn: start, slot: options.slot, timeline: pgTimeline },
      ctx.token,
    );
    status.isConnected = true;
    status.streamingLsn = start;
    let received = start;
    const channel = new Channel<WalPiece>({
      capacity: CHANNEL_PIECES,
      maxWeight: CHANNEL_BYTES,
      weigh: (p) => p.data.length,
      name: `WAL from ${source.address}`,
    });
    // Up to where a flush was last asked for: the server repeats its requests until the
    // flush position catches up, and one freeze per position is enough.
    let flushAskedFor = -1n;
    const positions: FeedbackPositions = {
      write: () => received,
      flush: () => timeline.diskConsistentLsn,
      apply: options.applyLsn ?? (() => timeline.diskConsistentLsn),
      requestFlush: () => {
        if (received <= flushAskedFor) return;
        flushAskedFor = received;
        // Freezes the open layer now; the flush task writes it, and the poller reports
        // the flush position once it moves. Synchronous: nothing is left running here.
        // Called from the socket's data callback, so it must not throw: a stopping
        // timeline flushes by itself.
        if (timeline.state === "active") {
          try {
            timeline.freeze();
          } catch {
            // Shutting down meanwhile: its own flush covers this.
          }
        }
      },
    };
    const poller = spawn(
      {
        token: ctx.token,
        gate,
        parent: ctx,
        name: `poller ${source.address}`,
        kind: TaskKind.WalReceiverConnectionPoller,
      },
      (pctx) =>
        pollConnection(stream, channel, positions, status, pctx, {
          statusIntervalMs,
          // The manager gives a connection up after connectTimeoutMs without a message.
          pingAfterMs: Math.floor((options.connectTimeoutMs ?? 10_000) / 2),
        }),
    );
    let ingestError: unknown;
    /** A piece taken from the channel that did not join on to the one before it. */
    let carried: WalPiece | undefined;
    try {
      while (true) {
        // What is queued is taken at once; only an empty channel is waited on.
        let piece = carried ?? channel.tryRecv();
        carried = undefined;
        if (piece === undefined) {
          try {
            piece = await channel.recv(ctx.token);
          } catch (error) {
            if (error instanceof ChannelClosedError) break;
            throw error;
          }
        }
        // Queued pieces that continue it (the next WAL, next in the same pooled slab: the
        // messages of one socket read) go with it, in one ingest call.
        for (let next = channel.tryRecv(); next !== undefined; next = channel.tryRecv()) {
          const joined = joinPieces(piece, next);
          if (joined === undefined) {
            carried = next;
            break;
          }
          piece = joined;
        }
        try {
          await timeline.ingest(piece.lsn, piece.data, ctx);
        } finally {
          // The layer holds its own reference to what it kept.
          walBuffers.release(piece.data);
        }
        received = piece.lsn + BigInt(piece.data.length);
        status.hasProcessedWal = true;
      }
    } catch (error) {
      ingestError = error;
      poller.cancel("connection handler failed");
    } finally {
      if (carried !== undefined) walBuffers.release(carried.data);
    }
    // The poller is this task's child: it ends before the handler does, always.
    const outcome = await poller.join();
    if (ingestError !== undefined) throw ingestError;
    if (outcome.status !== "succeeded") throw outcome.error;
    const end = outcome.value;
    const switchAt = end.nextTimelineStart;
    if (switchAt !== undefined && timeline.streamEnd > switchAt) {
      // The source's timeline ended inside a record we had started to receive (a standby
      // promoted while it held only part of it): that record never happened on the new
      // timeline. Drop the incomplete tail, so the next connection starts at the switch.
      // Complete records past the switch would mean the histories diverged.
      if (timeline.lastRecordLsn > switchAt) {
        throw new TimelineDivergedError(
          source.display,
          timeline.pgTimeline,
          switchAt,
          timeline.lastRecordLsn,
        );
      }
      timeline.discardIncompleteTail();
    }
    if (end.nextTimeline !== undefined && options.onTimelineHistory !== undefined) {
      const history = await conn.timelineHistory(end.nextTimeline, ctx.token);
      await options.onTimelineHistory(history.filename, history.content);
    }
    return end;
  } finally {
    status.isConnected = false;
    await conn.close();
  }
}

/** Where `tli` ends according to a history file's content (`tli\tswitchLSN\treason` lines). */
function timelineEnd(content: string, tli: number): Lsn | undefined {
  for (const line of content.split("\n")) {
    const [t, lsn] = line.trim().split(/\s+/);
    if (t !== undefined && lsn !== undefined && /^\d+$/.test(t) && Number(t) === tli) {
      try {
        return parseLsn(lsn);
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
