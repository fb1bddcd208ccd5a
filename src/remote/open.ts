/**
 * Opening remote storage by URL.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { FileStorage } from "./file_storage.js";
import type { RemoteStorage } from "./storage.js";

/**
 * Opens the remote storage a `--remote` URL names:
 * - `file:///path`: a local (or mounted) directory;
 * - `s3://bucket/prefix?endpoint=http://host:port&forcePathStyle=true&region=us-east-1`:
 *   S3-compatible object storage (query parameters optional; credentials and region
 *   also from the usual AWS environment variables).
 * Throws `TypeError` naming the URL (without credentials) when it is neither.
 *
 * @example
 * ```ts
 * import { openRemoteStorage } from "tideline/remote";
 * const storage = await openRemoteStorage("file:///var/backups/tideline");
 * ```
 */
export async function openRemoteStorage(url: string): Promise<RemoteStorage> {
  return await open(url);
}

async function open(url: string): Promise<RemoteStorage> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(
      `Invalid remote storage URL "${url}": expected file:///path or s3://bucket/prefix`,
    );
  }
  if (parsed.protocol === "file:") return new FileStorage(fileURLToPath(parsed));
  if (parsed.protocol === "s3:") {
    // Loaded only here, so commands without S3 never load the AWS SDK.
    const { S3Storage } = await import("./s3_storage.js");
    return S3Storage.fromUrl(parsed);
  }
  parsed.password = "";
  throw new TypeError(
    `Unsupported remote storage URL "${parsed.toString()}": expected file:///path or s3://bucket/prefix`,
  );
}
