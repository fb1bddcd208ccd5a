/**
 * Splitting the backend's byte stream of a physical replication stream: WAL and keepalives
 * taken straight from the socket's buffers, every other protocol message passed on.
 *
 * @module
 */
import { formatLsn, type Lsn } from "../lsn.js";
import { ReplicationProtocolError } from "./parser.js";

/** Where {@linkcode ReplicationStreamSplitter} sends what it finds. */
export interface SplitterHandlers {
  /**
   * WAL bytes from an XLogData (`w`) message: `data` holds the WAL from `lsn` on. A message
   * split across received buffers comes in several calls, each a view of one buffer.
   * `walEnd` is the server's flush position when it sent the message.
   */
  wal(lsn: Lsn, data: Buffer, walEnd: Lsn): void;
  /** A keepalive (`k`): the server's flush position, send time, and whether it wants a reply. */
  keepalive(walEnd: Lsn, sendTime: bigint, replyRequested: boolean): void;
  /** Bytes of any other backend message (CopyDone, errors, notices, ...), in order. */
  other(bytes: Buffer): void;
}

/** CopyData. */
const COPY_DATA = 0x64;
const XLOG_DATA = 0x77; // w
const KEEPALIVE = 0x6b; // k
const XLOG_HEADER = 25;
const KEEPALIVE_SIZE = 18;
const MAX_LSN = 0xffff_ffff_ffff_ffffn;

/**
 * Takes the backend's bytes as received (split anywhere) during START_REPLICATION and
 * splits them: the WAL of each XLogData message goes to `wal` as views of the very buffers
 * pushed (no copy: push buffers that nothing writes to afterwards, such as a socket's
 * reads), keepalives to `keepalive`, and every message that is not CopyData
 * to `other`, byte for byte, for the regular protocol parser. After
 * {@linkcode passThrough}, everything goes to `other` unparsed. A malformed CopyData
 * payload throws {@linkcode ReplicationProtocolError} (the stream is then unusable).
 *
 * @example
 * ```ts
 * import { ReplicationStreamSplitter } from "tideline/wal";
 * const s = new ReplicationStreamSplitter({
 *   wal: (lsn, data) => console.log(lsn, data.length),
 *   keepalive: (walEnd, _t, reply) => console.log("keepalive", walEnd, reply),
 *   other: (bytes) => console.log("other", bytes[0]),
 * });
 * s.push(Buffer.from([0x63, 0, 0, 0, 4])); // CopyDone: "other 99"
 * ```
 */
export class ReplicationStreamSplitter {
  readonly #on: SplitterHandlers;
  /** The 5-byte message header being read (type, length). */
  readonly #hdr = Buffer.alloc(5);
  #hdrHave = 0;
  #type = 0;
  /** Body bytes of the current message not read yet (-1: reading a header). */
  #left = -1;
  /** The start of a CopyData payload, gathered until its kind and header are known. */
  readonly #head = Buffer.alloc(XLOG_HEADER);
  #headHave = 0;
  #headNeed = 0;
  /** The LSN of the next WAL byte of the current XLogData message (-1n: none). */
  #lsn = -1n;
  #walEnd = 0n;
  #passThrough = false;

  constructor(handlers: SplitterHandlers) {
    this.#on = handlers;
  }

  /**
   * From the end of the current message on, every byte pushed goes to `other` as it is
   * (the stream is over).
   */
  passThrough(): void {
    this.#passThrough = true;
  }

  /** Whether {@linkcode passThrough} was called. */
  get passingThrough(): boolean {
    return this.#passThrough;
  }

  /** Takes the next received bytes. */
  push(chunk: Buffer): void {
    const end = chunk.length;
    let i = 0;
    while (i < end) {
      if (this.#left < 0) {
        if (this.#passThrough) {
          if (this.#hdrHave > 0) this.#on.other(Buffer.from(this.#hdr.subarray(0, this.#hdrHave)));
          this.#hdrHave = 0;
          this.#on.other(i === 0 ? chunk : chunk.subarray(i));
          return;
        }
        // A message header: type byte and int32 length (which counts itself).
        if (this.#hdrHave === 0 && end - i >= 5) {
          this.#type = chunk[i]!;
          this.#startBody(chunk.readUInt32BE(i + 1), chunk, i);
          i += 5;
        } else {
          while (this.#hdrHave < 5 && i < end) this.#hdr[this.#hdrHave++] = chunk[i++]!;
          if (this.#hdrHave < 5) return;
          this.#hdrHave = 0;
          this.#type = this.#hdr[0]!;
          this.#startBody(this.#hdr.readUInt32BE(1), undefined, 0);
        }
        if (this.#left === 0) this.#endMessage();
        continue;
      }
      const n = Math.min(this.#left, end - i);
      if (this.#type !== COPY_DATA) {
        this.#on.other(chunk.subarray(i, i + n));
      } else if (this.#headHave < this.#headNeed) {
        const k = Math.min(n, this.#headNeed - this.#headHave);
        chunk.copy(this.#head, this.#headHave, i, i + k);
        this.#headHave += k;
        this.#left -= k;
        i += k;
        if (this.#headHave === this.#headNeed) this.#payloadHead();
        if (this.#left === 0) this.#endMessage();
        continue;
      } else if (this.#lsn >= 0n) {
        const view = chunk.subarray(i, i + n);
        const lsn = this.#lsn;
        this.#lsn += BigInt(n);
        this.#on.wal(lsn, view, this.#walEnd);
      }
      this.#left -= n;
      i += n;
      if (this.#left === 0) this.#endMessage();
    }
  }

  /** A header was read: `length` counts itself. `from`/`at`: where the header lies, if in one buffer. */
  #startBody(length: number, from: Buffer | undefined, at: number): void {
    if (length < 4) {
      throw new ReplicationProtocolError(
        `Backend message 0x${this.#type.toString(16).padStart(2, "0")} with length ${length}: expected at least 4`,
      );
    }
    this.#left = length - 4;
    if (this.#type === COPY_DATA) {
      if (this.#left === 0) {
        throw new ReplicationProtocolError(
          "Unexpected an empty message in the replication stream: expected 'w' or 'k'",
        );
      }
      this.#headHave = 0;
      this.#headNeed = 1;
      this.#lsn = -1n;
      return;
    }
    this.#on.other(
      from !== undefined ? from.subarray(at, at + 5) : Buffer.from(this.#hdr.subarray(0, 5)),
    );
  }

  /** The gathered start of a CopyData payload is complete (so far as needed). */
  #payloadHead(): void {
    const h = this.#head;
    const kind = h[0]!;
    const size = this.#headHave + this.#left; // the whole payload
    if (this.#headNeed === 1) {
      if (kind === XLOG_DATA) {
        if (size < XLOG_HEADER) {
          throw new ReplicationProtocolError(
            `XLogData message of ${size} bytes: expected at least ${XLOG_HEADER}`,
          );
        }
        this.#headNeed = XLOG_HEADER;
      } else if (kind === KEEPALIVE) {
        if (size !== KEEPALIVE_SIZE) {
          throw new ReplicationProtocolError(
            `keepalive message of ${size} bytes: expected ${KEEPALIVE_SIZE}`,
          );
        }
        this.#headNeed = KEEPALIVE_SIZE;
      } else {
        throw new ReplicationProtocolError(
          `Unexpected message type 0x${kind.toString(16).padStart(2, "0")} in the replication stream: expected 'w' or 'k'`,
        );
      }
      return;
    }
    if (kind === XLOG_DATA) {
      const dataStart = h.readBigUInt64BE(1);
      if (dataStart + BigInt(this.#left) > MAX_LSN) {
        throw new ReplicationProtocolError(
          `XLogData at ${formatLsn(dataStart)} runs past the end of the LSN space`,
        );
      }
      this.#walEnd = h.readBigUInt64BE(9);
      this.#lsn = dataStart;
    } else {
      this.#on.keepalive(h.readBigUInt64BE(1), h.readBigInt64BE(9), h[17] !== 0);
    }
  }

  #endMessage(): void {
    this.#left = -1;
    this.#lsn = -1n;
  }
}
