/**
 * Waiting until a monotonically advancing value (an LSN) reaches a target.
 *
 * @module
 */
import type { CancellationToken } from "./cancellation_token.js";
import { CancelledError, ShutdownError, TimeoutError } from "./errors.js";
import { type LongTimer, setLongTimeout } from "./timer.js";

/** Options of {@linkcode SeqWait.wait}. */
export interface SeqWaitOptions {
  /** The waiter's token: cancelling it rejects the wait with `CancelledError`. */
  token: CancellationToken;
  /** Give up after this many milliseconds with `TimeoutError`. Default: no limit. */
  timeoutMs?: number;
  /** Describes the wait for the timeout's message (called only on timeout). */
  describe?: () => string;
}

interface Waiter<V> {
  readonly target: V;
  index: number;
  settle(error: unknown, value?: V): void;
}

const defaultCompare = <V>(a: V, b: V): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A value that only moves forward, and waiters for it to reach a target. Waiters are
 * kept in a min-heap by target: {@linkcode advance} wakes every waiter at or below the
 * new value, lowest target first; {@linkcode shutdown} wakes all with an error. Each
 * wait takes a token and an optional timeout.
 *
 * @example
 * ```ts
 * import { CancellationToken, SeqWait } from "tideline/lifecycle";
 * const token = new CancellationToken();
 * const lastRecordLsn = new SeqWait(0n);
 * const reached = lastRecordLsn.wait(0x16b3d88n, { token, timeoutMs: 5000 });
 * lastRecordLsn.advance(0x2000000n);
 * console.log(await reached); // 33554432n
 * ```
 */
export class SeqWait<V> {
  readonly #compare: (a: V, b: V) => number;
  readonly #name: string;
  readonly #heap: Waiter<V>[] = [];
  #current: V;
  #shutdown: Error | undefined;

  constructor(initial: V, options: { compare?: (a: V, b: V) => number; name?: string } = {}) {
    this.#current = initial;
    this.#compare = options.compare ?? defaultCompare;
    this.#name = options.name ?? "SeqWait";
  }

  /**
   * The current value.
   *
   * @example
   * ```ts
   * import { SeqWait } from "tideline/lifecycle";
   * console.log(new SeqWait(5).load()); // 5
   * ```
   */
  load(): V {
    return this.#current;
  }

  /**
   * How many waiters are waiting.
   *
   * @example
   * ```ts
   * import { SeqWait } from "tideline/lifecycle";
   * console.log(new SeqWait(0).waiters); // 0
   * ```
   */
  get waiters(): number {
    return this.#heap.length;
  }

  /**
   * Whether waiting for `target` would block now.
   *
   * @example
   * ```ts
   * import { SeqWait } from "tideline/lifecycle";
   * const s = new SeqWait(10);
   * console.log(s.wouldWait(5), s.wouldWait(11)); // false true
   * ```
   */
  wouldWait(target: V): boolean {
    return this.#shutdown === undefined && this.#compare(target, this.#current) > 0;
  }

  /**
   * Moves the value forward to `value` and wakes, lowest target first, every waiter
   * whose target is at or below it. Moving backwards throws `RangeError`; the same
   * value again is a no-op. Returns the previous value.
   *
   * @example
   * ```ts
   * import { SeqWait } from "tideline/lifecycle";
   * const s = new SeqWait(0);
   * s.advance(10);
   * console.log(s.load()); // 10
   * ```
   */
  advance(value: V): V {
    const previous = this.#current;
    const order = this.#compare(value, previous);
    if (order < 0) {
      throw new RangeError(
        `${this.#name}: cannot move backwards from ${String(previous)} to ${String(value)}`,
      );
    }
    if (order === 0) return previous;
    this.#current = value;
    while (this.#heap.length > 0 && this.#compare(this.#heap[0]!.target, value) <= 0) {
      this.#pop().settle(undefined, value);
    }
    return previous;
  }

  /**
   * Resolves with the current value once it is at or beyond `target` (at once if it
   * already is). Rejects with `CancelledError` when `options.token` is cancelled,
   * `TimeoutError` after `options.timeoutMs`, or the shutdown error.
   *
   * @example
   * ```ts
   * import { CancellationToken, SeqWait, TimeoutError } from "tideline/lifecycle";
   * const s = new SeqWait(0);
   * await s.wait(1, { token: new CancellationToken(), timeoutMs: 10 })
   *   .catch((e) => console.log(e instanceof TimeoutError)); // true
   * ```
   */
  wait(target: V, options: SeqWaitOptions): Promise<V> {
    if (this.#shutdown !== undefined) return Promise.reject(this.#shutdown);
    if (this.#compare(target, this.#current) <= 0) return Promise.resolve(this.#current);
    const { token, timeoutMs, describe } = options;
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 0)) {
      return Promise.reject(
        new RangeError(`timeoutMs must be a finite number >= 0, got ${timeoutMs}`),
      );
    }
    if (token.isCancelled) return Promise.reject(new CancelledError(token.reason));
    return new Promise<V>((resolve, reject) => {
      let timer: LongTimer | undefined;
      let registration: Disposable | undefined;
      const waiter: Waiter<V> = {
        target,
        index: -1,
        settle: (error, value) => {
          timer?.clear();
          registration?.[Symbol.dispose]();
          if (error === undefined) resolve(value as V);
          else reject(error);
        },
      };
      this.#push(waiter);
      registration = token.onCancel((reason) => {
        this.#remove(waiter);
        waiter.settle(new CancelledError(reason));
      });
      if (timeoutMs !== undefined) {
        timer = setLongTimeout(() => {
          this.#remove(waiter);
          const what = describe?.() ?? `${this.#name}: waiting for ${String(target)}`;
          waiter.settle(new TimeoutError(timeoutMs, what));
        }, timeoutMs);
      }
    });
  }

  /**
   * Wakes every waiter with `error` (default a `ShutdownError`); later waits reject
   * with it at once. Idempotent (the first error stays).
   *
   * @example
   * ```ts
   * import { SeqWait } from "tideline/lifecycle";
   * const s = new SeqWait(0);
   * s.shutdown();
   * ```
   */
  shutdown(error: Error = new ShutdownError(this.#name)): void {
    if (this.#shutdown !== undefined) return;
    this.#shutdown = error;
    while (this.#heap.length > 0) this.#pop().settle(error);
  }

  #push(waiter: Waiter<V>): void {
    waiter.index = this.#heap.length;
    this.#heap.push(waiter);
    this.#up(waiter.index);
  }

  #pop(): Waiter<V> {
    const top = this.#heap[0]!;
    this.#remove(top);
    return top;
  }

  #remove(waiter: Waiter<V>): void {
    const i = waiter.index;
    if (i < 0) return;
    waiter.index = -1;
    const last = this.#heap.pop()!;
    if (last === waiter) return;
    this.#heap[i] = last;
    last.index = i;
    this.#down(i);
    this.#up(last.index);
  }

  #less(i: number, j: number): boolean {
    return this.#compare(this.#heap[i]!.target, this.#heap[j]!.target) < 0;
  }

  #swap(i: number, j: number): void {
    const a = this.#heap[i]!;
    const b = this.#heap[j]!;
    this.#heap[i] = b;
    this.#heap[j] = a;
    a.index = j;
    b.index = i;
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(i, parent)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    const n = this.#heap.length;
    while (true) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.#less(l, m)) m = l;
      if (r < n && this.#less(r, m)) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }
}
