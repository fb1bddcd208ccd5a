/**
 * Parsing the server's CopyData payloads of a physical replication stream.
 *
 * @module
 */
import { formatLsn } from "../lsn.js";
import type { ReplicationMessage } from "./messages.js";

/**
 * The server sent something that is not a valid replication message.
 *
 * @example
 * ```ts
 * import { parseReplicationMessage, ReplicationProtocolError } from "tideline/wal";
 * try { parseReplicationMessage(Buffer.from("x")); } catch (e) { console.log(e instanceof ReplicationProtocolError); }
 * ```
 */
export class ReplicationProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ReplicationProtocolError";
  }
}

/**
 * Parses one CopyData payload: `w` (XLogData: 'w', i64 dataStart, i64 walEnd, i64
 * sendTime, WAL bytes) or `k` (keepalive: 'k', i64 walEnd, i64 sendTime, u8 reply).
 * The `data` of an XLogData is a view of `payload`. Throws
 * {@linkcode ReplicationProtocolError} for anything else.
 *
 * @example
 * ```ts
 * import { parseReplicationMessage } from "tideline/wal";
 * const k = Buffer.alloc(18); k.write("k"); k[17] = 1;
 * parseReplicationMessage(k); // { name: "keepalive", walEnd: 0n, sendTime: 0n, replyRequested: true }
 * ```
 */
export function parseReplicationMessage(payload: Buffer): ReplicationMessage {
  const kind = payload[0];
  if (kind === 0x77 /* w */) {
    if (payload.length < 25) {
      throw new ReplicationProtocolError(
        `XLogData message of ${payload.length} bytes: expected at least 25`,
      );
    }
    const dataStart = payload.readBigUInt64BE(1);
    const data = payload.subarray(25);
    if (dataStart + BigInt(data.length) > 0xffff_ffff_ffff_ffffn) {
      throw new ReplicationProtocolError(
        `XLogData at ${formatLsn(dataStart)} runs past the end of the LSN space`,
      );
    }
    return {
      name: "xlogData",
      dataStart,
      walEnd: payload.readBigUInt64BE(9),
      sendTime: payload.readBigInt64BE(17),
      data,
    };
  }
  if (kind === 0x6b /* k */) {
    if (payload.length !== 18) {
      throw new ReplicationProtocolError(
        `keepalive message of ${payload.length} bytes: expected 18`,
      );
    }
    return {
      name: "keepalive",
      walEnd: payload.readBigUInt64BE(1),
      sendTime: payload.readBigInt64BE(9),
      replyRequested: payload[17] !== 0,
    };
  }
  const shown =
    kind === undefined
      ? "an empty message"
      : `message type 0x${kind.toString(16).padStart(2, "0")}`;
  throw new ReplicationProtocolError(
    `Unexpected ${shown} in the replication stream: expected 'w' or 'k'`,
  );
}
