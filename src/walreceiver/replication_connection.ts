/**
 * A physical replication connection to one PostgreSQL server, over `pg` as the
 * transport: the replication commands, and the CopyBoth stream of START_REPLICATION.
 *
 * @module
 */
import { Socket, type SocketConstructorOpts } from "node:net";
import pg from "pg";
import { type CancellationToken, CancelledError } from "../lifecycle/index.js";
import { walBuffers } from "../timeline/index.js";
import {
  formatLsn,
  type Lsn,
  parseLsn,
  parseReplicationMessage,
  ReplicationStreamSplitter,
} from "../wal/index.js";
import type { Source } from "./conninfo.js";
import { SourceError } from "./errors.js";

/** What IDENTIFY_SYSTEM answers. */
export interface SystemIdentity {
  systemId: bigint;
  /** The server's current timeline. */
  timeline: number;
  /** The server's flush position. */
  xlogpos: Lsn;
}

/** What READ_REPLICATION_SLOT answers for an existing slot. */
export interface SlotInfo {
  slotType: string;
  /** `undefined` when the slot reserves no WAL (or was invalidated). */
  restartLsn: Lsn | undefined;
  restartTimeline: number | undefined;
}

/** How a replication stream ended. */
export interface StreamEnd {
  /** Set when the server's timeline ended (a standby was promoted): where to continue. */
  nextTimeline?: number;
  nextTimelineStart?: Lsn;
}

interface PgMessage {
  fields?: (string | null)[];
  chunk?: Buffer;
}

/**
 * A replication stream: WAL comes to `onWal` and keepalives to `onKeepalive`, as they are
 * read from the socket; `pause`/`resume` stop and restart reading the socket
 * (back-pressure); `send` writes CopyData; `ended` settles when the server ends the stream
 * (with the next timeline, if any) or it fails (a malformed message included).
 */
export interface ReplicationStream {
  /**
   * WAL bytes from `lsn` on. `data` is memory that nothing writes to again: keep it as it
   * is, no copy needed. When it comes from {@linkcode walBuffers} it holds one reference,
   * which the consumer releases (`walBuffers.release(data)`) once it has kept what it needs
   * (a view dropped without a release only stops its slab from being reused). One XLogData message may
   * come in several calls (it is split where the socket's reads split it). `walEnd` is the
   * server's flush position when it sent the message.
   */
  onWal: (lsn: Lsn, data: Buffer, walEnd: Lsn) => void;
  /** A keepalive: the server's flush position, and whether it wants a status update now. */
  onKeepalive: (walEnd: Lsn, replyRequested: boolean) => void;
  pause(): void;
  resume(): void;
  send(payload: Buffer): void;
  readonly ended: Promise<StreamEnd>;
}

const SQLSTATE_CONNECTION_FAILURE = "08006";

function toSourceError(source: Source, error: unknown): Error {
  if (error instanceof SourceError || error instanceof CancelledError) return error;
  const e = error as { message?: string; code?: string };
  const code = typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  const message = e.message ?? String(error);
  if (
    code === undefined &&
    /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|terminated|ECONNRESET|timeout/i.test(message)
  ) {
    return new SourceError(source.display, message, SQLSTATE_CONNECTION_FAILURE, { cause: error });
  }
  return new SourceError(source.display, message, code, { cause: error });
}

/**
 * One replication connection. Every call takes a token: cancelling it destroys the
 * socket, so no call outlives its caller.
 *
 * @example
 * ```ts
 * import { ReplicationConnection, parseSource } from "tideline/walreceiver";
 * import { CancellationToken } from "tideline/lifecycle";
 * const token = new CancellationToken();
 * const conn = await ReplicationConnection.connect(parseSource("postgres://postgres@127.0.0.1:5432/postgres"), token);
 * console.log(await conn.identifySystem(token));
 * await conn.close();
 * ```
 */
export class ReplicationConnection {
  readonly source: Source;
  readonly #client: pg.Client;
  /** With reads into one reused buffer (no TLS): whether 'data' gets views of it. */
  #shared: { reused: boolean } | undefined;
  #closed = false;
  #error: Error | undefined;

  private constructor(source: Source, client: pg.Client) {
    this.source = source;
    this.#client = client;
    client.on("error", (error) => {
      this.#error = toSourceError(source, error);
    });
  }

  /** Opens a replication connection (`replication=true`), within `timeoutMs` (default 10 s). */
  static async connect(
    source: Source,
    token: CancellationToken,
    timeoutMs = 10_000,
  ): Promise<ReplicationConnection> {
    token.throwIfCancelled();
    const config: pg.ClientConfig = { ...source.config, connectionTimeoutMillis: timeoutMs };
    let shared: { reused: boolean } | undefined;
    // TLS (asked for in the URL, or through PGSSLMODE, which pg reads itself) wraps the
    // socket: then pg's own socket is used, as before.
    const sslmode = process.env.PGSSLMODE;
    if (!source.config.ssl && (sslmode === undefined || sslmode === "disable")) {
      // Socket reads go into one buffer, reused: no new memory per read. Whatever reads it
      // copies what it keeps: pg gets copies, and while a stream runs the splitter copies
      // the WAL into pooled memory (walBuffers). 1 MiB: while a backlog streams the socket
      // holds more than that, and each read is a turn of the event loop (256 KiB reads were
      // 4x the reads and turns, and ~5% slower over a 615 MB backlog).
      const state = { reused: false };
      shared = state;
      const socket: Socket = new Socket({
        // In Node's constructor since 12 (the types only list it for connect()).
        onread: {
          buffer: Buffer.allocUnsafeSlow(1 << 20),
          callback: (n: number, buf: Uint8Array) => {
            const view = Buffer.from(buf.buffer, buf.byteOffset, n);
            socket.emit("data", state.reused ? view : Buffer.from(view));
            return true;
          },
        },
      } as SocketConstructorOpts);
      config.stream = () => socket;
    }
    const client = new pg.Client(config);
    const conn = new ReplicationConnection(source, client);
    conn.#shared = shared;
    using _reg = token.onCancel(() => conn.#destroy());
    try {
      await client.connect();
    } catch (error) {
      conn.#destroy();
      if (token.isCancelled) throw new CancelledError(token.reason);
      throw toSourceError(source, error);
    }
    return conn;
  }

  #destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    (
      this.#client as unknown as { connection: { stream: { destroy(): void } } }
    ).connection.stream.destroy();
  }

  /** Closes the connection (politely, then by force). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const ending = this.#client.end().catch(() => {});
    const timer = setTimeout(
      () =>
        (
          this.#client as unknown as { connection: { stream: { destroy(): void } } }
        ).connection.stream.destroy(),
      1000,
    );
    await ending;
    clearTimeout(timer);
  }

  async #command(text: string, token: CancellationToken): Promise<(string | null)[][]> {
    token.throwIfCancelled();
    if (this.#error !== undefined) throw this.#error;
    using _reg = token.onCancel(() => this.#destroy());
    try {
      const result = await this.#client.query({ text, rowMode: "array" });
      return result.rows as (string | null)[][];
    } catch (error) {
      if (token.isCancelled) throw new CancelledError(token.reason);
      throw toSourceError(this.source, error);
    }
  }

  /** IDENTIFY_SYSTEM: the system identifier, current timeline and flush position. */
  async identifySystem(token: CancellationToken): Promise<SystemIdentity> {
    const [row] = await this.#command("IDENTIFY_SYSTEM", token);
    if (row === undefined || row[0] == null || row[1] == null || row[2] == null) {
      throw new SourceError(this.source.display, "IDENTIFY_SYSTEM returned no row");
    }
    return { systemId: BigInt(row[0]), timeline: Number(row[1]), xlogpos: parseLsn(row[2]) };
  }

  /** SHOW name: a server setting, as text (`wal_segment_size` gives e.g. "16MB"). */
  async show(name: string, token: CancellationToken): Promise<string> {
    if (!/^[a-z_]+$/.test(name)) throw new TypeError(`Invalid setting name "${name}"`);
    const [row] = await this.#command(`SHOW ${name}`, token);
    if (row?.[0] == null)
      throw new SourceError(this.source.display, `SHOW ${name} returned nothing`);
    return row[0];
  }

  /**
   * The server's `wal_sender_timeout` in ms (`0` when disabled), or `undefined` when it
   * cannot be read.
   */
  async walSenderTimeoutMs(token: CancellationToken): Promise<number | undefined> {
    let text: string;
    try {
      text = await this.show("wal_sender_timeout", token);
    } catch (error) {
      if (error instanceof CancelledError) throw error;
      return undefined;
    }
    const m = /^(\d+)\s*(ms|s|min|h|d)?$/.exec(text.trim());
    if (m === null) return undefined;
    const unit = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 }[
      (m[2] ?? "ms") as "ms" | "s" | "min" | "h" | "d"
    ];
    return Number(m[1]) * unit;
  }

  /** The server's WAL segment size in bytes. */
  async walSegmentSize(token: CancellationToken): Promise<number> {
    const text = await this.show("wal_segment_size", token);
    const m = /^(\d+)\s*(B|kB|MB|GB)?$/.exec(text.trim());
    if (m === null)
      throw new SourceError(this.source.display, `unexpected wal_segment_size "${text}"`);
    const unit = { B: 1, kB: 1024, MB: 1 << 20, GB: 1 << 30 }[
      (m[2] ?? "B") as "B" | "kB" | "MB" | "GB"
    ];
    return Number(m[1]) * unit;
  }

  /** TIMELINE_HISTORY n: the history file's name and content. */
  async timelineHistory(
    timeline: number,
    token: CancellationToken,
  ): Promise<{ filename: string; content: string }> {
    const [row] = await this.#command(`TIMELINE_HISTORY ${timeline}`, token);
    return { filename: row?.[0] ?? "", content: row?.[1] ?? "" };
  }

  /** READ_REPLICATION_SLOT: `undefined` when the slot does not exist. */
  async readReplicationSlot(slot: string, token: CancellationToken): Promise<SlotInfo | undefined> {
    const [row] = await this.#command(`READ_REPLICATION_SLOT ${quoteIdent(slot)}`, token);
    if (row === undefined || row[0] == null) return undefined;
    return {
      slotType: row[0],
      restartLsn: row[1] == null ? undefined : parseLsn(row[1]),
      restartTimeline: row[2] == null ? undefined : Number(row[2]),
    };
  }

  /** CREATE_REPLICATION_SLOT s PHYSICAL RESERVE_WAL. */
  async createPhysicalSlot(slot: string, token: CancellationToken): Promise<void> {
    await this.#command(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)} PHYSICAL RESERVE_WAL`, token);
  }

  /**
   * START_REPLICATION [SLOT s] PHYSICAL lsn [TIMELINE t]. Returns at once (the server's
   * CopyBothResponse is not awaited): WAL flows to `stream.onWal` as it comes; `stream.ended`
   * settles when the stream ends. Cancelling `token` destroys the connection (and `ended`
   * rejects with `CancelledError`).
   *
   * While the stream runs, the socket's bytes go through a {@linkcode ReplicationStreamSplitter}
   * before pg's parser, and pg sees every other message as usual. Without TLS the socket reads
   * into one reused buffer and the WAL is copied from it into pooled memory
   * ({@linkcode walBuffers}: `onWal`'s data holds one reference, for its consumer to release);
   * with TLS it is handed out as views of the socket's own reads, which Node allocates afresh.
   * pg's parser would first gather each 128 KiB XLogData message into a buffer of its own,
   * which then has to be copied again.
   */
  startReplication(
    options: { lsn: Lsn; slot?: string | undefined; timeline?: number | undefined },
    token: CancellationToken,
  ): ReplicationStream {
    if (this.#error !== undefined) throw this.#error;
    const text =
      `START_REPLICATION ${options.slot !== undefined ? `SLOT ${quoteIdent(options.slot)} ` : ""}PHYSICAL ${formatLsn(options.lsn)}` +
      (options.timeline !== undefined ? ` TIMELINE ${options.timeline}` : "");
    const connection = (this.#client as unknown as { connection: PgConnection }).connection;
    const socket = connection.stream;
    const rows: (string | null)[][] = [];
    let settle!: { resolve: (end: StreamEnd) => void; reject: (error: unknown) => void };
    const ended = new Promise<StreamEnd>((resolve, reject) => {
      settle = { resolve, reject };
    });
    const registration = token.onCancel((reason) => {
      this.#destroy();
      settle.reject(new CancelledError(reason));
    });
    // After CopyDone (the server's timeline ended) no more CopyData may be sent.
    let copyDone = false;
    const onCopyDone = () => {
      copyDone = true;
      connection.endCopyFrom();
    };
    connection.on("copyDone", onCopyDone);
    const stream: ReplicationStream = {
      onWal: () => {},
      onKeepalive: () => {},
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      send: (payload) => {
        if (!this.#closed && !copyDone) connection.sendCopyFromChunk(payload);
      },
      ended,
    };
    const shared = this.#shared;
    // pg-protocol reads the socket through one 'data' listener; put the splitter in front of it.
    const pgListeners = socket.listeners("data");
    const pgData = pgListeners.length === 1 ? pgListeners[0] : undefined;
    const splitter =
      pgData === undefined
        ? undefined
        : new ReplicationStreamSplitter({
            wal: (lsn, data, walEnd) =>
              stream.onWal(lsn, shared !== undefined ? walBuffers.copy(data) : data, walEnd),
            keepalive: (walEnd, _sendTime, replyRequested) =>
              stream.onKeepalive(walEnd, replyRequested),
            other: (bytes) => pgData(shared !== undefined ? Buffer.from(bytes) : bytes),
          });
    // A malformed message: the stream cannot go on.
    const fail = (error: unknown) => {
      finish();
      this.#destroy();
      settle.reject(token.isCancelled ? new CancelledError(token.reason) : error);
    };
    const onSocketData = (chunk: Buffer) => {
      try {
        splitter!.push(chunk);
      } catch (error) {
        fail(error);
      }
    };
    let finished = false;
    function finish() {
      if (finished) return;
      finished = true;
      registration[Symbol.dispose]();
      connection.removeListener("copyDone", onCopyDone);
      if (splitter !== undefined && pgData !== undefined) {
        // The rest of the bytes being split, and every later read, go to pg unparsed.
        splitter.passThrough();
        socket.removeListener("data", onSocketData);
        socket.on("data", pgData);
        if (shared !== undefined) shared.reused = false;
      }
    }
    if (splitter !== undefined && pgData !== undefined) {
      socket.removeListener("data", pgData);
      socket.on("data", onSocketData);
      if (shared !== undefined) shared.reused = true;
    }
    const submittable = {
      text,
      submit: (con: PgConnection) => {
        con.query(text);
      },
      // Only without the splitter: pg's chunk is a view of its reused buffer, so copy.
      handleCopyData: (msg: PgMessage) => {
        let m: ReturnType<typeof parseReplicationMessage>;
        try {
          m = parseReplicationMessage(msg.chunk!);
        } catch (error) {
          fail(error);
          return;
        }
        if (m.name === "keepalive") stream.onKeepalive(m.walEnd, m.replyRequested);
        else if (m.data.length > 0) stream.onWal(m.dataStart, Buffer.from(m.data), m.walEnd);
      },
      handleRowDescription: () => {},
      handleDataRow: (msg: PgMessage) => rows.push(msg.fields ?? []),
      handleCommandComplete: () => {},
      handleEmptyQuery: () => {},
      handlePortalSuspended: () => {},
      handleCopyInResponse: () => {},
      handleError: (error: unknown) => {
        finish();
        settle.reject(
          token.isCancelled ? new CancelledError(token.reason) : toSourceError(this.source, error),
        );
      },
      handleReadyForQuery: () => {
        finish();
        const row = rows[0];
        if (row?.[0] != null && row[1] != null) {
          settle.resolve({ nextTimeline: Number(row[0]), nextTimelineStart: parseLsn(row[1]) });
        } else settle.resolve({});
      },
    };
    this.#client.on("error", (error) => {
      finish();
      settle.reject(
        token.isCancelled ? new CancelledError(token.reason) : toSourceError(this.source, error),
      );
    });
    socket.once("close", () => {
      finish();
      settle.reject(
        token.isCancelled
          ? new CancelledError(token.reason)
          : new SourceError(
              this.source.display,
              "the connection closed",
              SQLSTATE_CONNECTION_FAILURE,
            ),
      );
    });
    this.#client.query(submittable as unknown as pg.QueryConfig);
    return stream;
  }
}

interface PgConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  on(event: string, fn: (...args: unknown[]) => void): void;
  removeListener(event: string, fn: (...args: unknown[]) => void): void;
  stream: {
    pause(): void;
    resume(): void;
    destroy(): void;
    once(event: string, fn: () => void): void;
    on(event: "data", fn: (chunk: Buffer) => void): void;
    removeListener(event: "data", fn: (chunk: Buffer) => void): void;
    listeners(event: "data"): ((chunk: Buffer) => void)[];
  };
}

function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw new TypeError(
      `Invalid replication slot name "${name}": expected lower-case letters, digits and _, at most 63`,
    );
  }
  return name;
}
