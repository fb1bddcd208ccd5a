/**
 * Asking a cluster who it is before a timeline is created for it: system id, current
 * PostgreSQL timeline and position, segment size, and a slot's restart point.
 *
 * @module
 */
import { type CancellationToken, CancelledError } from "../lifecycle/index.js";
import type { Lsn } from "../wal/index.js";
import type { Source } from "./conninfo.js";
import { ReplicationConnection } from "./replication_connection.js";

/** What the first reachable source said about itself. */
export interface SourceIdentity {
  /** The source that answered. */
  source: Source;
  /** The cluster's system identifier. */
  systemId: bigint;
  /** Its current PostgreSQL timeline. */
  timeline: number;
  /** Its current WAL position. */
  xlogpos: Lsn;
  /** Its WAL segment size, in bytes. */
  segmentSize: number;
  /** The restart LSN of `slot`, when a slot was named and it exists. */
  slotRestartLsn: Lsn | undefined;
}

/** No source answered; the message lists each one's error (without passwords). */
export class NoReachableSourceError extends Error {
  /** One line per source: `display: message`. */
  readonly errors: readonly string[];
  constructor(errors: readonly string[]) {
    super(`cannot stream from any source: ${errors.join("; ")}`);
    this.name = "NoReachableSourceError";
    this.errors = errors;
  }
}

/**
 * Connects to each source in turn and returns what the first one that answers says
 * about itself. Throws `NoReachableSourceError` when none does, `CancelledError` when
 * `token` is cancelled.
 *
 * @example
 * ```ts
 * import { CancellationToken } from "tideline/lifecycle";
 * import { identifySources, parseSource } from "tideline/walreceiver";
 * const id = await identifySources([parseSource("postgres://postgres@127.0.0.1:5432/postgres")], undefined, new CancellationToken());
 * console.log(id.systemId, id.segmentSize);
 * ```
 */
export async function identifySources(
  sources: readonly Source[],
  slot: string | undefined,
  token: CancellationToken,
  connectTimeoutMs = 10_000,
): Promise<SourceIdentity> {
  const errors: string[] = [];
  for (const source of sources) {
    try {
      const conn = await ReplicationConnection.connect(source, token, connectTimeoutMs);
      try {
        const id = await conn.identifySystem(token);
        const segmentSize = await conn.walSegmentSize(token);
        const slotInfo =
          slot === undefined ? undefined : await conn.readReplicationSlot(slot, token);
        return { source, ...id, segmentSize, slotRestartLsn: slotInfo?.restartLsn };
      } finally {
        await conn.close();
      }
    } catch (error) {
      if (error instanceof CancelledError) throw error;
      errors.push(`${source.display}: ${(error as Error).message}`);
    }
  }
  throw new NoReachableSourceError(errors);
}
