/**
 * The `timeline` layer: layers, LSN state, `waitLsn`, reads, export and shutdown
 * (`tideline/timeline`).
 *
 * @module
 */
export * from "./errors.js";
export * from "./export.js";
export * from "./fs_util.js";
export * from "./in_memory_layer.js";
export * from "./layer_fetcher.js";
export * from "./layer_file.js";
export * from "./layer_slot.js";
export * from "./layer_tables.js";
export * from "./rel_filter.js";
export * from "./restore.js";
export * from "./resume_point.js";
export * from "./timeline.js";
export * from "./timeline_id.js";
export * from "./timeline_index.js";
export * from "./wal_buffers.js";
export * from "./writer_lock.js";
