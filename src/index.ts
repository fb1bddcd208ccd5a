/**
 * Tideline: streams PostgreSQL's write-ahead log into durable, queryable timelines.
 *
 * The root export gathers the layers; each is also its own subpath export
 * (`tideline/lifecycle`, `tideline/wal`).
 *
 * @module
 */
export * from "./lifecycle/index.js";
export { VERSION } from "./service/version.js";
