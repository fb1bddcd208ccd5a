/**
 * Remote storage in S3-compatible object storage (`s3://bucket/prefix`), over the
 * official AWS SDK. Loaded lazily by `openRemoteStorage`, so commands that never touch
 * S3 never load the SDK.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { type CancellationToken, CancelledError } from "../lifecycle/index.js";
import {
  checkKey,
  RemoteObjectDamagedError,
  type RemoteStorage,
  RemoteStorageError,
} from "./storage.js";

/** Options of {@linkcode S3Storage}; everything but `bucket` is optional. */
export interface S3StorageOptions {
  bucket: string;
  /** Prepended to every key as `${prefix}/${key}`; `""` (the default) for none. */
  prefix?: string;
  /** An S3-compatible endpoint such as `http://127.0.0.1:9000`; AWS when absent. */
  endpoint?: string;
  /** `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`. */
  forcePathStyle?: boolean;
  /** The region; otherwise the SDK's default chain (`AWS_REGION`, the config file), else us-east-1. */
  region?: string;
  /** Explicit credentials; otherwise the SDK's default chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Attempts per call by the SDK itself (default 1: the uploader retries with its own backoff). */
  maxAttempts?: number;
  /** Abandon a connection attempt after this long (default 10 s). */
  connectionTimeoutMs?: number;
  /** Abandon a request whose socket stays idle this long (default 60 s). */
  idleTimeoutMs?: number;
  /** Keep connections open between requests (default true). */
  keepAlive?: boolean;
  /** Keys per `ListObjectsV2` page (default: the server's, 1000 on S3). */
  listPageSize?: number;
}

/** S3 error names that mean "try again later". */
const TRANSIENT_NAMES = new Set([
  "InternalError",
  "RequestTimeout",
  "RequestTimeoutException",
  "ServiceUnavailable",
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "RequestThrottled",
  "RequestTimeTooSkewed",
  "TimeoutError",
]);

/** Node.js error codes of a connection that failed or broke, not of a bad request. */
const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
]);

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** Whether retrying the failed call may help. */
function isTransient(error: unknown): boolean {
  const e = (error ?? {}) as SdkErrorShape;
  const name = e.name ?? "";
  if (TRANSIENT_NAMES.has(name)) return true;
  if (e.code !== undefined && TRANSIENT_CODES.has(e.code)) return true;
  if (/socket hang up|ECONNRESET|ECONNREFUSED|timed? ?out/i.test(e.message ?? "")) return true;
  if (e.$retryable !== undefined) return true;
  const status = e.$metadata?.httpStatusCode;
  if (status === undefined) return false;
  if (status >= 500 || status === 429 || status === 408) return true;
  // A failure on a 2xx/3xx response: the body was cut or garbled on the way.
  return status < 400;
}

function describeError(error: unknown): string {
  const e = (error ?? {}) as SdkErrorShape;
  const status = e.$metadata?.httpStatusCode;
  const parts = [e.name ?? "Error"];
  if (e.code !== undefined && e.code !== e.name) parts.push(e.code);
  if (status !== undefined) parts.push(`HTTP ${status}`);
  const head = parts.join(", ");
  return e.message ? `${head}: ${e.message}` : head;
}

/** `s3://bucket/prefix` plus the endpoint, with any user info removed. */
function displayOf(bucket: string, prefix: string, endpoint: string | undefined): string {
  let where = `s3://${bucket}${prefix === "" ? "" : `/${prefix}`}`;
  if (endpoint !== undefined) {
    try {
      const u = new URL(endpoint);
      u.username = "";
      u.password = "";
      where += ` at ${u.origin}${u.pathname === "/" ? "" : u.pathname}`;
    } catch {
      where += " at (invalid endpoint)";
    }
  }
  return where;
}

function normalizePrefix(prefix: string): string {
  const parts = prefix.split("/").filter((p) => p !== "");
  if (parts.some((p) => p === "." || p === "..")) {
    throw new RangeError(`Invalid S3 prefix ${JSON.stringify(prefix)}: no "." or ".." parts`);
  }
  return parts.join("/");
}

/**
 * A bucket (and an optional prefix in it) used as remote storage. S3 makes a `put`
 * atomic by itself: a reader sees the old object, the new one, or none, never a part.
 * For S3-compatible stores that are less careful, `put` also records the object's
 * SHA-256 in its metadata and `get` checks it, failing (not transient) rather than
 * returning a damaged object.
 * Every call passes the token's signal to the SDK, and rejects with `CancelledError`
 * once the token is cancelled; other failures become `RemoteStorageError`, transient
 * for timeouts, broken connections, 5xx and throttling.
 *
 * @example
 * ```ts
 * import { openRemoteStorage } from "tideline/remote"; // loads this module on demand
 * const storage = await openRemoteStorage(
 *   "s3://backups/tideline?endpoint=http://127.0.0.1:9000&forcePathStyle=true",
 * );
 * ```
 */
export class S3Storage implements RemoteStorage {
  readonly bucket: string;
  readonly prefix: string;
  readonly display: string;
  readonly client: S3Client;
  readonly #listPageSize: number | undefined;

  constructor(options: S3StorageOptions) {
    if (options.bucket === "" || options.bucket.includes("/")) {
      throw new RangeError(`Invalid S3 bucket name ${JSON.stringify(options.bucket)}`);
    }
    this.bucket = options.bucket;
    this.prefix = normalizePrefix(options.prefix ?? "");
    this.display = displayOf(this.bucket, this.prefix, options.endpoint);
    this.#listPageSize = options.listPageSize;
    const keepAlive = options.keepAlive ?? true;
    const config: S3ClientConfig = {
      region: options.region ?? defaultRegion,
      maxAttempts: options.maxAttempts ?? 1,
      followRegionRedirects: true,
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 10_000,
        socketTimeout: options.idleTimeoutMs ?? 60_000,
        httpAgent: new HttpAgent({ keepAlive }),
        httpsAgent: new HttpsAgent({ keepAlive }),
      },
    };
    if (options.endpoint !== undefined) config.endpoint = options.endpoint;
    if (options.forcePathStyle !== undefined) config.forcePathStyle = options.forcePathStyle;
    if (options.credentials !== undefined) config.credentials = options.credentials;
    this.client = new S3Client(config);
  }

  /**
   * From `s3://bucket/prefix?endpoint=http://host:port&forcePathStyle=true&region=us-east-1`
   * (query parameters optional). Credentials come from the environment, never the URL.
   */
  static fromUrl(url: URL, options: Partial<S3StorageOptions> = {}): S3Storage {
    if (url.protocol !== "s3:") throw new TypeError(`Not an s3:// URL: ${url.protocol}`);
    const bucket = url.hostname;
    const shown = `s3://${bucket}${url.pathname}`;
    if (url.username !== "" || url.password !== "") {
      throw new TypeError(
        `Remote storage URL "${shown}" carries credentials: give them in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a profile) instead`,
      );
    }
    if (bucket === "") throw new TypeError(`Remote storage URL "${shown}" names no bucket`);
    const known = new Set(["endpoint", "forcePathStyle", "region"]);
    for (const name of url.searchParams.keys()) {
      if (!known.has(name)) {
        throw new TypeError(
          `Remote storage URL "${shown}": unknown parameter "${name}" (expected endpoint, forcePathStyle, region)`,
        );
      }
    }
    const params = url.searchParams;
    const opts: S3StorageOptions = {
      ...options,
      bucket,
      prefix: url.pathname.split("/").map(decodeURIComponent).join("/"),
    };
    const endpoint = params.get("endpoint");
    if (endpoint !== null) {
      let parsed: URL;
      try {
        parsed = new URL(endpoint);
      } catch {
        throw new TypeError(`Remote storage URL "${shown}": endpoint is not a URL`);
      }
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
        throw new TypeError(`Remote storage URL "${shown}": endpoint must be http:// or https://`);
      }
      opts.endpoint = endpoint;
    }
    const forcePathStyle = params.get("forcePathStyle");
    if (forcePathStyle !== null) {
      if (!["true", "false", ""].includes(forcePathStyle)) {
        throw new TypeError(
          `Remote storage URL "${shown}": forcePathStyle must be true or false, got "${forcePathStyle}"`,
        );
      }
      opts.forcePathStyle = forcePathStyle !== "false";
    }
    const region = params.get("region");
    if (region !== null && region !== "") opts.region = region;
    return new S3Storage(opts);
  }

  #key(key: string): string {
    checkKey(key);
    return this.prefix === "" ? key : `${this.prefix}/${key}`;
  }

  #fail(op: string, key: string, error: unknown, token: CancellationToken): Error {
    if (token.isCancelled) return new CancelledError(token.reason);
    if (error instanceof RemoteStorageError) return error;
    return new RemoteStorageError(op, key, this.display, describeError(error), isTransient(error), {
      cause: error,
    });
  }

  async put(key: string, data: Buffer, token: CancellationToken): Promise<void> {
    const fullKey = this.#key(key);
    token.throwIfCancelled();
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: fullKey,
          Body: data,
          ContentLength: data.length,
          Metadata: { [SHA256_META]: sha256(data) },
        }),
        { abortSignal: token.signal },
      );
    } catch (error) {
      throw this.#fail("put", key, error, token);
    }
    token.throwIfCancelled();
  }

  async get(key: string, token: CancellationToken): Promise<Buffer | undefined> {
    const fullKey = this.#key(key);
    token.throwIfCancelled();
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: fullKey }),
        { abortSignal: token.signal },
      );
      const body = out.Body;
      if (body === undefined) {
        throw new RemoteStorageError("get", key, this.display, "response without a body", true);
      }
      // The SDK's abort signal covers the request, not reading the body: stop that too.
      const stream = body as unknown as { destroy?: (error?: Error) => void };
      using _reg = token.onCancel((reason) => stream.destroy?.(new CancelledError(reason)));
      const bytes = await body.transformToByteArray();
      token.throwIfCancelled();
      const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (out.ContentLength !== undefined && data.length !== out.ContentLength) {
        throw new RemoteStorageError(
          "get",
          key,
          this.display,
          `truncated: got ${data.length} of ${out.ContentLength} bytes`,
          true,
        );
      }
      const expected = out.Metadata?.[SHA256_META];
      if (expected !== undefined && sha256(data) !== expected) {
        throw new RemoteObjectDamagedError(
          "get",
          key,
          this.display,
          "the stored object does not match the SHA-256 it was written with (a store without atomic puts kept part of an interrupted upload?)",
        );
      }
      return data;
    } catch (error) {
      if (!token.isCancelled && isNoSuchKey(error)) return undefined;
      throw this.#fail("get", key, error, token);
    }
  }

  async list(prefix: string, token: CancellationToken): Promise<string[]> {
    token.throwIfCancelled();
    const root = this.prefix === "" ? "" : `${this.prefix}/`;
    const out: string[] = [];
    let continuation: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: root + prefix,
            ...(continuation === undefined ? {} : { ContinuationToken: continuation }),
            ...(this.#listPageSize === undefined ? {} : { MaxKeys: this.#listPageSize }),
          }),
          { abortSignal: token.signal },
        );
        for (const object of page.Contents ?? []) {
          if (object.Key?.startsWith(root)) out.push(object.Key.slice(root.length));
        }
        continuation = undefined;
        if (page.IsTruncated === true) {
          continuation = page.NextContinuationToken;
          if (continuation === undefined) {
            throw new RemoteStorageError(
              "list",
              prefix,
              this.display,
              "a truncated listing without a continuation token",
              false,
            );
          }
        }
        token.throwIfCancelled();
      } while (continuation !== undefined);
    } catch (error) {
      throw this.#fail("list", prefix, error, token);
    }
    return out.sort();
  }

  async delete(key: string, token: CancellationToken): Promise<void> {
    const fullKey = this.#key(key);
    token.throwIfCancelled();
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: fullKey }), {
        abortSignal: token.signal,
      });
    } catch (error) {
      throw this.#fail("delete", key, error, token);
    }
    token.throwIfCancelled();
  }

  /** Closes the client's pooled connections. */
  destroy(): void {
    this.client.destroy();
  }
}

/** The user metadata (`x-amz-meta-tideline-sha256`) that lets `get` verify an object. */
const SHA256_META = "tideline-sha256";

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("base64");
}

function isNoSuchKey(error: unknown): boolean {
  const e = (error ?? {}) as SdkErrorShape;
  if (e.name === "NoSuchKey" || e.name === "NotFound") return true;
  return e.$metadata?.httpStatusCode === 404 && e.name !== "NoSuchBucket";
}

/**
 * The region of the SDK's default chain (`AWS_REGION`, the shared config file), else
 * `AWS_DEFAULT_REGION`, else us-east-1 (the SDK itself refuses to guess).
 */
function defaultRegion(): Promise<string> {
  defaultRegionPromise ??= (async () => {
    const probe = new S3Client({});
    try {
      return await probe.config.region();
    } catch {
      const fallback = process.env.AWS_DEFAULT_REGION;
      return fallback !== undefined && fallback !== "" ? fallback : "us-east-1";
    } finally {
      probe.destroy();
    }
  })();
  return defaultRegionPromise;
}

let defaultRegionPromise: Promise<string> | undefined;
