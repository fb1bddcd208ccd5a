/**
 * The `walreceiver` layer: streaming WAL from PostgreSQL servers into a timeline, as a
 * tree of three tasks: manager -> connection handler -> connection poller
 * (`tideline/walreceiver`).
 *
 * @module
 */
export * from "./connection_handler.js";
export * from "./connection_poller.js";
export * from "./conninfo.js";
export * from "./errors.js";
export * from "./identify.js";
export * from "./manager.js";
export * from "./replication_connection.js";
export * from "./status.js";
export * from "./walreceiver.js";
