/**
 * The `remote` layer: remote storage backends and the upload of a timeline's layers
 * (`tideline/remote`).
 *
 * @module
 */
export * from "./file_storage.js";
export * from "./open.js";
export * from "./storage.js";
