/**
 * The `remote` layer: remote storage backends and the upload of a timeline's layers
 * (`tideline/remote`).
 *
 * @module
 */
export * from "./file_storage.js";
export * from "./open.js";
// Type only: an S3Storage comes from openRemoteStorage("s3://..."), which loads the AWS SDK lazily.
export type { S3Storage, S3StorageOptions } from "./s3_storage.js";
export * from "./storage.js";
export * from "./uploader.js";
