/**
 * The CopyData messages of PostgreSQL's physical replication stream.
 *
 * @module
 */
import type { Lsn } from "../lsn.js";

/** `w`: WAL bytes from the server. */
export interface XLogData {
  readonly name: "xlogData";
  /** The LSN of the first byte of `data`. */
  readonly dataStart: Lsn;
  /** The server's flush position when it sent this (not the end of `data`). */
  readonly walEnd: Lsn;
  /** When the server sent it, in microseconds since 2000-01-01 UTC. */
  readonly sendTime: bigint;
  /** The WAL bytes: a view of the received message (copy what you keep). */
  readonly data: Buffer;
}

/** `k`: the server's keepalive. */
export interface PrimaryKeepalive {
  readonly name: "keepalive";
  readonly walEnd: Lsn;
  readonly sendTime: bigint;
  /** The server wants a status update now (or it will drop the connection). */
  readonly replyRequested: boolean;
}

/** Any message the server sends in the replication stream. */
export type ReplicationMessage = XLogData | PrimaryKeepalive;

/** `r`: the client's status update. Each position is the last byte + 1. */
export interface StandbyStatusUpdate {
  /** WAL received. */
  readonly write: Lsn;
  /** WAL durable: a slot's restart point follows it, so never report what is not durable. */
  readonly flush: Lsn;
  /** WAL applied (for Tideline: in remote storage, or durable without remote storage). */
  readonly apply: Lsn;
  /** Client clock, microseconds since 2000-01-01 UTC. */
  readonly clock: bigint;
  /** Ask the server to answer at once. */
  readonly replyRequested: boolean;
}

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC). */
export const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

/**
 * A wall-clock time (ms since the Unix epoch) as PostgreSQL's timestamp.
 *
 * @example
 * ```ts
 * import { toPgTimestamp } from "tideline/wal";
 * toPgTimestamp(Date.UTC(2000, 0, 1)); // 0n
 * ```
 */
export function toPgTimestamp(unixMs: number): bigint {
  return BigInt(Math.round(unixMs * 1000)) - PG_EPOCH_OFFSET_US;
}

/**
 * PostgreSQL's timestamp as ms since the Unix epoch.
 *
 * @example
 * ```ts
 * import { fromPgTimestamp } from "tideline/wal";
 * fromPgTimestamp(0n); // 946684800000
 * ```
 */
export function fromPgTimestamp(pg: bigint): number {
  return Number((pg + PG_EPOCH_OFFSET_US) / 1000n);
}
