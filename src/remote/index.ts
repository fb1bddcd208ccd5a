/**
 * The `remote` layer: remote storage backends, the upload of a timeline's layers, and
 * timelines attached from remote storage (`tideline/remote`).
 *
 * @module
 */
export * from "./attach.js";
export * from "./file_storage.js";
export * from "./layer_fetcher.js";
export * from "./open.js";
export * from "./remote_keys.js";
export * from "./retry.js";
// Type only: an S3Storage comes from openRemoteStorage("s3://..."), which loads the AWS SDK lazily.
export type { S3Storage, S3StorageOptions } from "./s3_storage.js";
export * from "./storage.js";
export * from "./uploader.js";
