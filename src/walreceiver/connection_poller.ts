/**
 * The connection poller: the task that owns a replication connection's socket.
 *
 * @module
 */
import type { Channel, RequestContext } from "../lifecycle/index.js";
import { type Lsn, lsnMin, serializeStatusUpdate, toPgTimestamp } from "../wal/index.js";
import type { ReplicationStream, StreamEnd } from "./replication_connection.js";
import type { WalConnectionStatus } from "./status.js";

/** A piece of WAL handed from the poller to the handler (memory nothing writes to again). */
export interface WalPiece {
  lsn: Lsn;
  data: Buffer;
}

/** Where the positions of a status update come from. */
export interface FeedbackPositions {
  /** WAL received (last byte + 1). */
  write(): Lsn;
  /** WAL durable. */
  flush(): Lsn;
  /** WAL in remote storage, or durable when there is none. */
  apply(): Lsn;
  /**
   * Asks for the WAL received so far to be made durable soon, without waiting (the server
   * asked for a reply while flush < write: a primary shutting down waits until its WAL is
   * reported flushed, as pg_receivewal syncs before replying).
   */
  requestFlush?(): void;
}

/** Options of {@linkcode pollConnection}. */
export interface PollerOptions {
  /** Send a status update at least this often, ms. Default 10 000 (the server's timeout is 60 s). */
  statusIntervalMs?: number;
  /** Check for a moved flush position this often (and report it), ms. Default 1000. */
  feedbackCheckMs?: number;
  /**
   * Nothing heard for this long: ask the server for a reply (a server that hears from us
   * regularly sends nothing on an idle stream). Default 5000 (half the manager's 10 s).
   */
  pingAfterMs?: number;
}

/**
 * Runs the poller: reads the stream's messages as they come, answers keepalives that
 * ask for a reply at once, forwards WAL to `channel` and pauses the socket while the
 * channel is full, sends a status update at least every `statusIntervalMs` (and soon
 * after the flush position moves) even while ingest is slow. Ends when the server ends
 * the stream (returning how it ended) or the token is cancelled; closes `channel` either
 * way, so the handler drains what was received and stops.
 *
 * @example
 * ```ts
 * // spawn({ ..., kind: TaskKind.WalReceiverConnectionPoller }, (ctx) => pollConnection(stream, channel, positions, status, ctx));
 * ```
 */
export async function pollConnection(
  stream: ReplicationStream,
  channel: Channel<WalPiece>,
  positions: FeedbackPositions,
  status: WalConnectionStatus,
  ctx: RequestContext,
  options: PollerOptions = {},
): Promise<StreamEnd> {
  const statusInterval = options.statusIntervalMs ?? 10_000;
  const checkEvery = options.feedbackCheckMs ?? Math.min(1000, statusInterval);
  const pingAfter = options.pingAfterMs ?? 5000;
  const overflow: WalPiece[] = [];
  let paused = false;
  let wake: (() => void) | undefined;
  let failure: unknown;
  let lastSentAt = 0;
  let lastSentFlush = -1n;

  const sendStatus = (replyRequested: boolean) => {
    const write = positions.write();
    const flush = positions.flush();
    const apply = positions.apply();
    stream.send(
      serializeStatusUpdate({
        write,
        flush: lsnMin(flush, write),
        apply: lsnMin(apply, lsnMin(flush, write)),
        clock: toPgTimestamp(Date.now()),
        replyRequested,
      }),
    );
    lastSentAt = Date.now();
    lastSentFlush = flush;
  };

  stream.onKeepalive = (walEnd, replyRequested) => {
    status.lastMessageAt = Date.now();
    status.sourceFlushLsn = walEnd;
    if (replyRequested) {
      if (positions.flush() < positions.write()) positions.requestFlush?.();
      sendStatus(false);
    }
  };

  stream.onWal = (lsn, data, walEnd) => {
    status.lastMessageAt = status.lastWalAt = Date.now();
    status.sourceFlushLsn = walEnd;
    // Pooled memory (or, with TLS, the socket's own reads) that nothing else writes to: no copy.
    const piece = { lsn, data };
    status.streamingLsn = lsn + BigInt(data.length);
    if (overflow.length === 0 && channel.trySend(piece)) return;
    overflow.push(piece);
    if (!paused) {
      paused = true;
      stream.pause();
    }
    wake?.();
  };

  let ended: StreamEnd | undefined;
  // Both outcomes are handled here; the promise is the connection's and ends with it.
  stream.ended.then(
    (end) => {
      ended = end;
      wake?.();
    },
    (error: unknown) => {
      failure ??= error;
      wake?.();
    },
  );

  // While the handler is held up (ingest waiting on back-pressure), the loop below waits on
  // the channel with the socket paused, and keepalives asking for a reply go unread: keep
  // reporting on a timer, or the server drops the connection at wal_sender_timeout.
  const heartbeat = setInterval(
    () => {
      if (failure !== undefined || ended !== undefined || ctx.token.isCancelled) return;
      // While the socket is paused for back-pressure its silence is ours, not the source's
      // (WAL is waiting in it): keep the manager's no-keepalive and no-WAL clocks still.
      if (paused) status.lastMessageAt = status.lastWalAt = Date.now();
      const now = Date.now();
      // Like PostgreSQL's walreceiver: silence for a while, ask for a reply (a keepalive).
      const ping = now - (status.lastMessageAt ?? 0) >= pingAfter;
      if (ping || now - lastSentAt >= statusInterval || positions.flush() !== lastSentFlush)
        sendStatus(ping);
    },
    Math.min(checkEvery, Math.max(50, Math.floor(pingAfter / 2))),
  );
  try {
    sendStatus(false);
    while (true) {
      if (failure !== undefined) throw failure;
      // Drain the overflow with back-pressure, then let the socket flow again.
      while (overflow.length > 0) {
        await channel.send(overflow[0]!, ctx.token);
        overflow.shift();
      }
      if (paused) {
        paused = false;
        status.lastMessageAt = status.lastWalAt = Date.now();
        stream.resume();
      }
      if (ended !== undefined) return ended;
      const now = Date.now();
      if (now - lastSentAt >= statusInterval || positions.flush() !== lastSentFlush)
        sendStatus(false);
      // Sleep until something happens: data overflowed, the stream ended or failed, the
      // token was cancelled, or it is time to check the flush position again.
      if (
        failure === undefined &&
        ended === undefined &&
        overflow.length === 0 &&
        !ctx.token.isCancelled
      ) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(finish, checkEvery);
          const registration = ctx.token.onCancel(finish);
          function finish() {
            clearTimeout(timer);
            registration[Symbol.dispose]();
            wake = undefined;
            resolve();
          }
          wake = finish;
        });
      }
      ctx.throwIfCancelled();
    }
  } finally {
    clearInterval(heartbeat);
    channel.close();
    stream.onWal = () => {};
    stream.onKeepalive = () => {};
  }
}
