/**
 * Timers for any delay: Node's `setTimeout` fires after 1 ms for delays over 2^31-1 ms
 * (about 24.8 days), so longer ones are re-armed in steps. Internal to the library.
 *
 * @module
 */

/** The longest delay `setTimeout` honours. */
const MAX_TIMEOUT = 2 ** 31 - 1;

/** A pending timer; `clear()` cancels it. */
export interface LongTimer {
  clear(): void;
}

/**
 * Calls `fn` after `ms` milliseconds, however long that is. Not unref'd: a pending
 * timer keeps the process alive, as `setTimeout` does.
 *
 * @example
 * ```ts
 * const t = setLongTimeout(() => console.log("a month later"), 30 * 24 * 3600 * 1000);
 * t.clear();
 * ```
 */
export function setLongTimeout(fn: () => void, ms: number): LongTimer {
  let handle: ReturnType<typeof setTimeout>;
  const deadline = Date.now() + ms;
  const arm = (delay: number) => {
    handle = setTimeout(() => {
      const left = deadline - Date.now();
      if (delay === MAX_TIMEOUT && left > 0) arm(Math.min(left, MAX_TIMEOUT));
      else fn();
    }, delay);
  };
  arm(Math.min(ms, MAX_TIMEOUT));
  return { clear: () => clearTimeout(handle) };
}
