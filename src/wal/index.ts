/**
 * The `wal` layer: LSNs, segment arithmetic, page and record layouts, and the streaming WAL
 * decoder (`tideline/wal`).
 *
 * @module
 */
export { type ChunkRead, RecordCrcList, readWithRecordCrcs } from "./crc_list.js";
export * from "./crc32c.js";
export * from "./decoder.js";
export * from "./dump.js";
export * from "./errors.js";
export * from "./lsn.js";
export * from "./native.js";
export * from "./page.js";
export * from "./record.js";
export * from "./replication/index.js";
export * from "./rmgr/index.js";
export * from "./segment.js";
export * from "./version.js";
export * from "./wal_files.js";
