/**
 * Token-aware sleeping.
 *
 * @module
 */
import type { CancellationToken } from "./cancellation_token.js";
import { CancelledError } from "./errors.js";
import { setLongTimeout } from "./timer.js";

/**
 * Resolves after `ms` milliseconds, or rejects with `CancelledError` as soon as
 * `token` is cancelled (clearing the timer). Throws `RangeError` for a negative or
 * non-finite `ms`.
 *
 * @example
 * ```ts
 * import { CancellationToken, sleep } from "tideline/lifecycle";
 * const token = new CancellationToken();
 * await sleep(100, token); // 100 ms later
 * ```
 */
export function sleep(ms: number, token: CancellationToken): Promise<void> {
  if (!Number.isFinite(ms) || ms < 0) {
    return Promise.reject(new RangeError(`sleep: ms must be a finite number >= 0, got ${ms}`));
  }
  if (token.isCancelled) return Promise.reject(new CancelledError(token.reason));
  return new Promise<void>((resolve, reject) => {
    const registration = token.onCancel((reason) => {
      timer.clear();
      reject(new CancelledError(reason));
    });
    const timer = setLongTimeout(() => {
      registration[Symbol.dispose]();
      resolve();
    }, ms);
  });
}
