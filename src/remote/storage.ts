/**
 * Remote storage: where a timeline's layer files and index go to survive the loss of
 * the machine. A small interface, implemented for a local directory and for
 * S3-compatible object storage.
 *
 * @module
 */
import type { CancellationToken } from "../lifecycle/index.js";

/**
 * A place to keep objects by key (`timelines/main/layers/<name>.layer`). `put` is atomic:
 * a reader sees the whole object or none of it.
 *
 * @example
 * ```ts
 * import { openRemoteStorage } from "tideline/remote";
 * import { CancellationToken } from "tideline/lifecycle";
 * const storage = await openRemoteStorage("file:///var/backups/tideline");
 * await storage.put("hello", Buffer.from("world"), new CancellationToken());
 * ```
 */
export interface RemoteStorage {
  /** Where it is, without credentials (for logs and errors). */
  readonly display: string;
  /** Stores `data` under `key`, replacing any object there. */
  put(key: string, data: Buffer, token: CancellationToken): Promise<void>;
  /** The object under `key`, or `undefined` when there is none. */
  get(key: string, token: CancellationToken): Promise<Buffer | undefined>;
  /** Keys that start with `prefix`, sorted. */
  list(prefix: string, token: CancellationToken): Promise<string[]>;
  /** Removes the object under `key` (no error if there is none). */
  delete(key: string, token: CancellationToken): Promise<void>;
}

/**
 * A remote storage operation failed. `transient` says whether retrying may help
 * (timeouts, 5xx, connection resets) or not (access denied, no such bucket).
 *
 * @example
 * ```ts
 * import { RemoteStorageError } from "tideline/remote";
 * new RemoteStorageError("put", "timelines/main/index.json", "file:///backups", "disk full", false).message;
 * ```
 */
export class RemoteStorageError extends Error {
  readonly op: string;
  readonly key: string;
  readonly transient: boolean;
  constructor(
    op: string,
    key: string,
    storage: string,
    detail: string,
    transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(`Remote storage ${storage}: ${op} "${key}" failed: ${detail}`, options);
    this.name = "RemoteStorageError";
    this.op = op;
    this.key = key;
    this.transient = transient;
  }
}

/**
 * An object came back different from what was stored (its checksum does not match): a
 * store without atomic puts kept part of an interrupted upload. Not transient: reading it
 * again gives the same bytes; only putting it again mends it.
 *
 * @example
 * ```ts
 * import { RemoteObjectDamagedError } from "tideline/remote";
 * new RemoteObjectDamagedError("get", "timelines/main/index.json", "s3://b", "SHA-256 mismatch").transient; // false
 * ```
 */
export class RemoteObjectDamagedError extends RemoteStorageError {
  constructor(op: string, key: string, storage: string, detail: string) {
    super(op, key, storage, detail, false);
    this.name = "RemoteObjectDamagedError";
  }
}

/** Checks an object key: relative, `/`-separated, no `..`, no empty parts. */
export function checkKey(key: string): string {
  if (
    typeof key !== "string" ||
    key === "" ||
    key.startsWith("/") ||
    key.split("/").some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new RangeError(
      `Invalid remote storage key ${JSON.stringify(key)}: expected a relative path like timelines/main/index.json`,
    );
  }
  return key;
}
