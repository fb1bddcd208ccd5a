/**
 * What a connection tells its manager, and what the WAL receiver tells operators.
 *
 * @module
 */
import type { Lsn } from "../wal/index.js";

/** The live state of one connection, updated by its handler and poller. */
export interface WalConnectionStatus {
  /** The source, without password. */
  source: string;
  /** `host:port`. */
  address: string;
  /** START_REPLICATION was accepted. */
  isConnected: boolean;
  /** At least one piece of WAL was ingested. */
  hasProcessedWal: boolean;
  /** When the last message (WAL or keepalive) arrived, ms since the epoch. */
  lastMessageAt: number | undefined;
  /** When the last WAL arrived, ms since the epoch. */
  lastWalAt: number | undefined;
  /** The end of the WAL received. */
  streamingLsn: Lsn | undefined;
  /** The source's flush position, as last reported. */
  sourceFlushLsn: Lsn | undefined;
}

/**
 * A fresh status for a connection to `source`.
 *
 * @example
 * ```ts
 * import { newConnectionStatus } from "tideline/walreceiver";
 * newConnectionStatus("postgres://u@h:5432/db", "h:5432").isConnected; // false
 * ```
 */
export function newConnectionStatus(source: string, address: string): WalConnectionStatus {
  return {
    source,
    address,
    isConnected: false,
    hasProcessedWal: false,
    lastMessageAt: undefined,
    lastWalAt: undefined,
    streamingLsn: undefined,
    sourceFlushLsn: undefined,
  };
}

/** Why the manager switched (or reconnected). */
export type SwitchReason =
  | "NoExistingConnection"
  | "NoKeepAlives"
  | "LaggingWal"
  | "NoWalTimeout"
  | "ConnectionFailed"
  | "TimelineEnded";
