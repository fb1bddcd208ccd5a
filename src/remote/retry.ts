/**
 * Retrying remote storage calls that failed transiently, with backoff on the caller's token.
 *
 * @module
 */
import { type CancellationToken, CancelledError, sleep } from "../lifecycle/index.js";
import { RemoteStorageError } from "./storage.js";

/** Backoff between attempts: the first delay, the factor per attempt, and the cap (ms). */
export interface RetryBackoff {
  minMs: number;
  factor: number;
  maxMs: number;
}

/** Options of {@linkcode retryTransient}. */
export interface RetryOptions {
  /** Default 100 ms, x2, capped at 10 s. */
  retry?: RetryBackoff;
  /** Give up after this many attempts (default: never, until the token is cancelled). */
  maxAttempts?: number;
  /** Told about every failed attempt (for logs and counters). */
  onError?: (error: unknown, attempt: number) => void;
}

/**
 * The default backoff: 100 ms, doubling, at most 10 s.
 *
 * @example
 * ```ts
 * import { DEFAULT_RETRY_BACKOFF } from "tideline/remote";
 * const patient = { ...DEFAULT_RETRY_BACKOFF, maxMs: 60_000 };
 * ```
 */
export const DEFAULT_RETRY_BACKOFF: RetryBackoff = { minMs: 100, factor: 2, maxMs: 10_000 };

/**
 * Runs `what` until it succeeds, retrying a transient {@linkcode RemoteStorageError}
 * (timeouts, 5xx, broken connections) after a backoff slept on `token`. Any other error,
 * a `CancelledError`, or the last of `maxAttempts` attempts is thrown.
 *
 * @example
 * ```ts
 * import { FileStorage, retryTransient } from "tideline/remote";
 * import { CancellationToken } from "tideline/lifecycle";
 * const storage = new FileStorage("/var/backups/tideline");
 * const token = new CancellationToken();
 * const index = await retryTransient(() => storage.get("timelines/main/index.json", token), token);
 * ```
 */
export async function retryTransient<T>(
  what: () => Promise<T>,
  token: CancellationToken,
  options: RetryOptions = {},
): Promise<T> {
  const { minMs, factor, maxMs } = options.retry ?? DEFAULT_RETRY_BACKOFF;
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  for (let attempt = 1; ; attempt++) {
    try {
      return await what();
    } catch (error) {
      if (error instanceof CancelledError || token.isCancelled) throw error;
      options.onError?.(error, attempt);
      if (!(error instanceof RemoteStorageError) || !error.transient || attempt >= maxAttempts)
        throw error;
      await sleep(Math.min(maxMs, minMs * factor ** (attempt - 1)), token);
    }
  }
}
