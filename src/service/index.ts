/**
 * The `service` layer: `tideline server`'s timelines, HTTP API, metrics and auth, the
 * logger, and the throwaway-PostgreSQL launcher (`tideline/service`).
 *
 * @module
 */
export * from "./http/app.js";
export * from "./http/auth.js";
export * from "./http/errors.js";
export * from "./local_postgres.js";
export * from "./log.js";
export * from "./metrics.js";
export * from "./server.js";
export * from "./timeline_definition.js";
export * from "./timeline_service.js";
export * from "./version.js";
