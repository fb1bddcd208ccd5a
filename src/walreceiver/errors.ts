/**
 * Errors of WAL sources that callers handle.
 *
 * @module
 */
import { formatLsn, type Lsn } from "../wal/index.js";

/**
 * A WAL source failed: it refused the connection or a command, or the connection broke.
 * `sqlstate` is the server's SQLSTATE when it sent one (e.g. `58P01` for a removed
 * segment, `42704` for a missing slot, `28000` for a refused replication login).
 *
 * @example
 * ```ts
 * import { SourceError } from "tideline/walreceiver";
 * const e = new SourceError("127.0.0.1:5432", "replication slot \"x\" does not exist", "42704");
 * e.message; // 'Source 127.0.0.1:5432: replication slot "x" does not exist (SQLSTATE 42704)'
 * ```
 */
export class SourceError extends Error {
  readonly source: string;
  readonly sqlstate: string | undefined;
  constructor(source: string, detail: string, sqlstate?: string, options?: { cause?: unknown }) {
    super(`Source ${source}: ${detail}${sqlstate ? ` (SQLSTATE ${sqlstate})` : ""}`, options);
    this.name = "SourceError";
    this.source = source;
    this.sqlstate = sqlstate;
  }
}

/**
 * The source belongs to another PostgreSQL cluster than the timeline.
 *
 * @example
 * ```ts
 * import { SystemIdMismatchError } from "tideline/walreceiver";
 * new SystemIdMismatchError("127.0.0.1:5432", 1n, 2n).message;
 * ```
 */
export class SystemIdMismatchError extends Error {
  readonly expected: bigint;
  readonly got: bigint;
  constructor(source: string, expected: bigint, got: bigint) {
    super(
      `Source ${source} has system identifier ${got}, but the timeline holds WAL of system ${expected}: refusing to mix clusters`,
    );
    this.name = "SystemIdMismatchError";
    this.expected = expected;
    this.got = got;
  }
}

/**
 * The timeline holds WAL that the source's history does not: the source was promoted
 * from a point before the end of what the timeline received (its old primary's WAL past
 * that point was lost to it). Streaming from it would mix two histories.
 *
 * @example
 * ```ts
 * import { TimelineDivergedError } from "tideline/walreceiver";
 * new TimelineDivergedError("127.0.0.1:5432", 1, 0x3000000n, 0x3100000n).message;
 * ```
 */
export class TimelineDivergedError extends Error {
  readonly pgTimeline: number;
  readonly switchLsn: Lsn;
  readonly lastRecordLsn: Lsn;
  constructor(source: string, pgTimeline: number, switchLsn: Lsn, lastRecordLsn: Lsn) {
    super(
      `Source ${source}: its history leaves timeline ${pgTimeline} at ${formatLsn(switchLsn)}, but this timeline holds WAL of timeline ${pgTimeline} up to ${formatLsn(lastRecordLsn)}: the histories diverged, refusing this source`,
    );
    this.name = "TimelineDivergedError";
    this.pgTimeline = pgTimeline;
    this.switchLsn = switchLsn;
    this.lastRecordLsn = lastRecordLsn;
  }
}
