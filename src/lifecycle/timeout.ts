/**
 * Time limits that cancel the work they limit.
 *
 * @module
 */
import type { CancellationToken } from "./cancellation_token.js";
import { CancelledError, TimeoutError } from "./errors.js";
import { setLongTimeout } from "./timer.js";

/**
 * Runs `body` with a child of `token` that is cancelled after `ms` milliseconds. If
 * the time runs out first, it rejects with {@linkcode TimeoutError} (the body's token
 * is cancelled with that error as reason, so the body stops); if `token` is
 * cancelled first, with `CancelledError`. Otherwise it settles like `body`.
 *
 * @example
 * ```ts
 * import { CancellationToken, sleep, withTimeout } from "tideline/lifecycle";
 * const root = new CancellationToken();
 * const value = await withTimeout(root, 1000, async (token) => {
 *   await sleep(10, token);
 *   return "fast enough";
 * });
 * ```
 */
export async function withTimeout<T>(
  token: CancellationToken,
  ms: number,
  body: (token: CancellationToken) => Promise<T>,
  what = "Operation",
): Promise<T> {
  if (!Number.isFinite(ms) || ms < 0) {
    throw new RangeError(`withTimeout: ms must be a finite number >= 0, got ${ms}`);
  }
  const child = token.child();
  const timeout = new TimeoutError(ms, what);
  const timer = setLongTimeout(() => child.cancel(timeout), ms);
  try {
    return await child.race(Promise.resolve().then(() => body(child)));
  } catch (error) {
    if (error instanceof CancelledError && error.reason === timeout && !token.isCancelled) {
      throw timeout;
    }
    throw error;
  } finally {
    timer.clear();
    // Stops whatever the body left running, and unlinks the child from `token`.
    child.cancel("withTimeout finished");
  }
}
