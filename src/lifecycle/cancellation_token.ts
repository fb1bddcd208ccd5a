/**
 * A tree of cancellation tokens, linked explicitly parent -> child and unlinked
 * when a child is disposed or cancelled, so that long-lived parents never
 * accumulate dead children (unlike `AbortSignal.any`, which leaks on Node 20).
 *
 * @module
 */
import { CancelledError } from "./errors.js";

const NOOP_DISPOSABLE: Disposable = Object.freeze({ [Symbol.dispose]() {} });
const NO_ERRORS: readonly unknown[] = Object.freeze([]);

class Registration implements Disposable {
  constructor(
    readonly token: CancellationToken,
    readonly fn: (reason: unknown) => void,
  ) {}
  [Symbol.dispose](): void {
    unregister(this);
  }
}

let unregister: (r: Registration) => void;

/**
 * A cancellation token: a flag that is set once, with callbacks, a promise and an
 * `AbortSignal` that follow it, arranged in a tree.
 *
 * - `new CancellationToken()` is a root; {@linkcode child} derives a child that is
 *   cancelled whenever its parent is (born cancelled if the parent already is).
 *   Cancelling a child never touches its parent.
 * - {@linkcode cancel} is idempotent and has cancelled the whole subtree (every
 *   flag set, every callback run) before it returns.
 * - A token is `Disposable`: disposing a child unlinks it from its parent, so a
 *   parent that outlives millions of short-lived children keeps a flat heap.
 *   A cancelled child unlinks itself too.
 *
 * @example
 * ```ts
 * import { CancellationToken } from "tideline/lifecycle";
 * const timeline = new CancellationToken();
 * {
 *   using walreceiver = timeline.child();
 *   walreceiver.onCancel((reason) => console.log("stopping:", reason));
 *   timeline.cancel("shutdown"); // prints "stopping: shutdown"
 *   console.log(walreceiver.isCancelled); // true
 * }
 * ```
 */
export class CancellationToken implements Disposable {
  #parent: CancellationToken | undefined;
  #children: Set<CancellationToken> | undefined;
  #callbacks: Set<Registration> | undefined;
  #cancelled = false;
  #reason: unknown;
  #controller: AbortController | undefined;
  #promise: Promise<void> | undefined;
  #resolve: (() => void) | undefined;
  #detach: (() => void) | undefined;

  static {
    unregister = (r) => {
      r.token.#callbacks?.delete(r);
    };
  }

  /**
   * Wraps an `AbortSignal` (from a caller, `AbortSignal.timeout`, a framework) as a
   * root token that is cancelled, with the signal's reason, when the signal aborts.
   * Disposing the token removes its listener from the signal.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * using token = CancellationToken.fromSignal(AbortSignal.timeout(50));
   * await token.cancelled();
   * console.log(token.reason); // a TimeoutError DOMException
   * ```
   */
  static fromSignal(signal: AbortSignal): CancellationToken {
    const token = new CancellationToken();
    if (signal.aborted) {
      token.cancel(signal.reason);
      return token;
    }
    const onAbort = () => token.cancel(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    token.#detach = () => signal.removeEventListener("abort", onAbort);
    return token;
  }

  /**
   * Derives a child token: cancelled when this token is, never the other way round.
   * The child is born cancelled (with this token's reason) if this token already is.
   * Dispose the child when it is no longer needed to unlink it from this token.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const parent = new CancellationToken();
   * using child = parent.child();
   * child.cancel();
   * console.log(parent.isCancelled, child.isCancelled); // false true
   * ```
   */
  child(): CancellationToken {
    const child = new CancellationToken();
    if (this.#cancelled) {
      child.#cancelled = true;
      child.#reason = this.#reason;
      return child;
    }
    child.#parent = this;
    if (this.#children === undefined) this.#children = new Set();
    this.#children.add(child);
    return child;
  }

  /**
   * Cancels this token and its whole subtree. Idempotent: only the first call has an
   * effect (and sets the reason). When it returns, every token of the subtree is
   * cancelled and every `onCancel` callback has run; its signals have aborted and its
   * `cancelled()` promises are resolved (their reactions run later, as always).
   * It never throws: a callback that throws does not stop the others; its error goes to
   * {@linkcode CancellationToken.onCallbackError} and is returned (so `cancel()` is safe in
   * timer callbacks and signal listeners, where a throw would crash the process).
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const root = new CancellationToken();
   * const leaf = root.child().child();
   * root.cancel("bye");
   * console.log(leaf.isCancelled, leaf.reason); // true "bye"
   * ```
   */
  cancel(reason?: unknown): readonly unknown[] {
    if (this.#cancelled) return NO_ERRORS;
    // Set every flag of the subtree first, so that callbacks see a consistent tree.
    const nodes: CancellationToken[] = [];
    const stack: CancellationToken[] = [this];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.#cancelled) continue;
      node.#cancelled = true;
      node.#reason = reason;
      nodes.push(node);
      if (node.#children !== undefined) for (const c of node.#children) stack.push(c);
    }
    if (this.#parent !== undefined) this.#parent.#children?.delete(this);
    let errors: unknown[] | undefined;
    for (const node of nodes) {
      node.#parent = undefined;
      node.#children = undefined;
      node.#detach?.();
      node.#detach = undefined;
      const callbacks = node.#callbacks;
      node.#callbacks = undefined;
      if (callbacks !== undefined) {
        for (const r of callbacks) {
          try {
            r.fn(reason);
          } catch (error) {
            if (errors === undefined) errors = [];
            errors.push(error);
          }
        }
      }
      node.#controller?.abort(new CancelledError(reason));
      node.#resolve?.();
      node.#resolve = undefined;
    }
    if (errors === undefined) return NO_ERRORS;
    for (const error of errors) {
      try {
        CancellationToken.onCallbackError(error, this);
      } catch {
        // A reporter that throws must not turn cancel() into a throwing call.
      }
    }
    return errors;
  }

  /**
   * Where errors thrown by `onCancel` callbacks are reported (`cancel()` itself never
   * throws). Default: `console.error`. Replace it to route them into your logs.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * CancellationToken.onCallbackError = (error) => myLogger.warn({ error }, "onCancel callback threw");
   * ```
   */
  static onCallbackError: (error: unknown, token: CancellationToken) => void = (error) => {
    console.error("tideline/lifecycle: an onCancel callback threw:", error);
  };

  /**
   * Whether this token has been cancelled.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * console.log(t.isCancelled); // false
   * ```
   */
  get isCancelled(): boolean {
    return this.#cancelled;
  }

  /**
   * The reason given to the `cancel()` call that cancelled this token (or an ancestor).
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * t.cancel("done");
   * console.log(t.reason); // "done"
   * ```
   */
  get reason(): unknown {
    return this.#reason;
  }

  /**
   * How many live children are linked to this token (a diagnostic: it stays flat when
   * children are disposed or cancelled).
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * { using _c = t.child(); console.log(t.childCount); } // 1
   * console.log(t.childCount); // 0
   * ```
   */
  get childCount(): number {
    return this.#children?.size ?? 0;
  }

  /**
   * Whether `ancestor` is this token or one of its linked ancestors. Links are cut when
   * a token is disposed or cancelled, so this answers for live trees (e.g. "does this
   * context run inside that timeline's WAL receiver?").
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const root = new CancellationToken();
   * const leaf = root.child().child();
   * console.log(leaf.isDescendantOf(root), root.isDescendantOf(leaf)); // true false
   * ```
   */
  isDescendantOf(ancestor: CancellationToken): boolean {
    for (let t: CancellationToken | undefined = this; t !== undefined; t = t.#parent) {
      if (t === ancestor) return true;
    }
    return false;
  }

  /**
   * A promise that resolves when this token is cancelled. It never rejects.
   * Prefer {@linkcode race} or {@linkcode onCancel} inside loops: every
   * `Promise.race([token.cancelled(), ...])` leaves a reaction on this promise
   * until the token is cancelled.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * setTimeout(() => t.cancel(), 10);
   * await t.cancelled();
   * ```
   */
  cancelled(): Promise<void> {
    if (this.#cancelled) return Promise.resolve();
    if (this.#promise === undefined) {
      this.#promise = new Promise<void>((resolve) => {
        this.#resolve = resolve;
      });
    }
    return this.#promise;
  }

  /**
   * Throws {@linkcode CancelledError} (carrying the reason) if this token is cancelled.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * t.throwIfCancelled(); // nothing
   * t.cancel();
   * try { t.throwIfCancelled(); } catch (e) { console.log((e as Error).name); } // "CancelledError"
   * ```
   */
  throwIfCancelled(): void {
    if (this.#cancelled) throw new CancelledError(this.#reason);
  }

  /**
   * Runs `fn(reason)` when this token is cancelled; at once if it already is. Disposing
   * the returned registration unregisters `fn` (do it when the guarded wait is over).
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * const timer = setInterval(() => {}, 1000);
   * using _reg = t.onCancel(() => clearInterval(timer));
   * t.cancel();
   * ```
   */
  onCancel(fn: (reason: unknown) => void): Disposable {
    if (typeof fn !== "function")
      throw new TypeError(`onCancel expects a function, got ${typeof fn}`);
    if (this.#cancelled) {
      fn(this.#reason);
      return NOOP_DISPOSABLE;
    }
    const registration = new Registration(this, fn);
    if (this.#callbacks === undefined) this.#callbacks = new Set();
    this.#callbacks.add(registration);
    return registration;
  }

  /**
   * Settles like `promise`, unless this token is cancelled first: then it rejects with
   * {@linkcode CancelledError}. The cancellation hook is removed once `promise`
   * settles, so it is safe in loops. The abandoned `promise` keeps running; make it
   * take this token too if it should stop.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * const value = await t.race(Promise.resolve(42)); // 42
   * ```
   */
  race<T>(promise: PromiseLike<T>): Promise<T> {
    if (this.#cancelled) {
      Promise.resolve(promise).catch(() => {});
      return Promise.reject(new CancelledError(this.#reason));
    }
    return new Promise<T>((resolve, reject) => {
      const registration = this.onCancel((reason) => reject(new CancelledError(reason)));
      promise.then(
        (value) => {
          registration[Symbol.dispose]();
          resolve(value);
        },
        (error: unknown) => {
          registration[Symbol.dispose]();
          reject(error);
        },
      );
    });
  }

  /**
   * An `AbortSignal` that aborts when this token is cancelled (its reason is a
   * {@linkcode CancelledError}), for `fetch`, timers, streams and other platform APIs.
   * Created on first use.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const t = new CancellationToken();
   * const response = fetch("http://127.0.0.1:9898/v1/status", { signal: t.signal });
   * t.cancel(); // the fetch rejects
   * await response.catch(() => {});
   * ```
   */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#cancelled) this.#controller.abort(new CancelledError(this.#reason));
    }
    return this.#controller.signal;
  }

  /**
   * Unlinks this token from its parent (and from a wrapped signal) without cancelling
   * it. Idempotent. After disposal, the token no longer follows its parent.
   *
   * @example
   * ```ts
   * import { CancellationToken } from "tideline/lifecycle";
   * const root = new CancellationToken();
   * for (let i = 0; i < 1_000_000; i++) {
   *   using _child = root.child();
   * }
   * console.log(root.childCount); // 0
   * ```
   */
  [Symbol.dispose](): void {
    if (this.#parent !== undefined) this.#parent.#children?.delete(this);
    this.#parent = undefined;
    this.#detach?.();
    this.#detach = undefined;
  }
}
