/**
 * Tideline: streams PostgreSQL's write-ahead log into durable, queryable timelines.
 *
 * The root export gathers the layers; each is also a subpath export of its own:
 * `tideline/lifecycle` (zero dependencies), `tideline/wal`, `tideline/timeline`,
 * `tideline/walreceiver`.
 *
 * @example
 * ```ts
 * import { Timeline, WalReceiver } from "tideline";
 * const timeline = await Timeline.create({ dataDir: "/var/lib/tideline", id: "main", startLsn: 0x1000000n });
 * WalReceiver.start(timeline, { sources: ["postgres://replicator@127.0.0.1:5432/postgres"] });
 * ```
 *
 * @module
 */
export * from "./lifecycle/index.js";
export { findPostgres, startEmbedded } from "./service/local_postgres.js";
export { createLogger, type Logger } from "./service/log.js";
export { VERSION } from "./service/version.js";
export * from "./timeline/index.js";
export * from "./wal/index.js";
export * from "./walreceiver/index.js";
