/**
 * Serializing the client's CopyData payloads of a physical replication stream.
 *
 * @module
 */
import type { StandbyStatusUpdate } from "./messages.js";

/**
 * Serializes a standby status update: 'r', i64 write, i64 flush, i64 apply, i64 clock,
 * u8 replyRequested (34 bytes, big-endian).
 *
 * @example
 * ```ts
 * import { serializeStatusUpdate, toPgTimestamp } from "tideline/wal";
 * const msg = serializeStatusUpdate({ write: 0x3000000n, flush: 0x2000000n, apply: 0x2000000n, clock: toPgTimestamp(Date.now()), replyRequested: false });
 * msg.length; // 34
 * ```
 */
export function serializeStatusUpdate(status: StandbyStatusUpdate): Buffer {
  if (status.flush > status.write || status.apply > status.flush) {
    throw new RangeError(
      `Status positions must satisfy apply <= flush <= write, got write ${status.write}, flush ${status.flush}, apply ${status.apply}`,
    );
  }
  const buf = Buffer.alloc(34);
  buf[0] = 0x72; // r
  buf.writeBigUInt64BE(status.write, 1);
  buf.writeBigUInt64BE(status.flush, 9);
  buf.writeBigUInt64BE(status.apply, 17);
  buf.writeBigInt64BE(status.clock, 25);
  buf[33] = status.replyRequested ? 1 : 0;
  return buf;
}
