/**
 * A set of sibling tasks under one owner, joined in the order they finish.
 *
 * @module
 */

import type { CancellationToken } from "./cancellation_token.js";
import { Deque } from "./deque.js";
import { CancelledError } from "./errors.js";
import type { RequestContext } from "./request_context.js";
import { spawn, type Task, type TaskOutcome, type TaskOwner } from "./task.js";
import type { TaskKind } from "./task_kind.js";

/** A finished task with its outcome, as {@linkcode JoinSet.joinNext} returns it. */
export interface Joined<T> {
  readonly task: Task<T>;
  readonly outcome: TaskOutcome<T>;
}

interface Waiter<T> {
  resolve(joined: Joined<T> | undefined): void;
}

/**
 * A group of tasks spawned under one owner (token and gate): spawn many, join the
 * next one to finish, cancel them all, or shut down (cancel all, then wait for all).
 * Disposing it (`await using set = new JoinSet(owner)`) shuts it down.
 *
 * @example
 * ```ts
 * import { CancellationToken, Gate, JoinSet, sleep } from "tideline/lifecycle";
 * const owner = { token: new CancellationToken(), gate: new Gate("uploads") };
 * await using uploads = new JoinSet<string>(owner);
 * for (const layer of ["a", "b", "c"]) {
 *   uploads.spawn(`upload ${layer}`, "RemoteUpload", async (ctx) => {
 *     await sleep(10, ctx.token);
 *     return layer;
 *   });
 * }
 * for (let j; (j = await uploads.joinNext(owner.token)); ) console.log(j.task.name, j.outcome.status);
 * ```
 */
export class JoinSet<T> implements AsyncDisposable {
  readonly #owner: TaskOwner;
  readonly #running = new Set<Task<T>>();
  readonly #finished = new Deque<Joined<T>>();
  readonly #waiters = new Deque<Waiter<T>>();

  constructor(owner: TaskOwner) {
    this.#owner = owner;
  }

  /**
   * Spawns a task under the set's owner. Throws `GateClosedError` if the owner's gate
   * is closing.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, JoinSet } from "tideline/lifecycle";
   * const set = new JoinSet<number>({ token: new CancellationToken(), gate: new Gate() });
   * set.spawn("answer", "Background", () => 42);
   * console.log((await set.joinNext())?.outcome); // { status: "succeeded", value: 42 }
   * ```
   */
  spawn(name: string, kind: TaskKind, body: (ctx: RequestContext) => Promise<T> | T): Task<T> {
    const task = spawn({ ...this.#owner, name, kind }, body);
    this.#running.add(task);
    task.onEnded((outcome) => this.#finish({ task, outcome }));
    return task;
  }

  #finish(joined: Joined<T>): void {
    this.#running.delete(joined.task);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(joined);
    else this.#finished.push(joined);
  }

  /**
   * Tasks spawned and not yet joined (running or finished).
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, JoinSet } from "tideline/lifecycle";
   * console.log(new JoinSet({ token: new CancellationToken(), gate: new Gate() }).size); // 0
   * ```
   */
  get size(): number {
    return this.#running.size + this.#finished.length;
  }

  /**
   * Waits for the next task to finish and returns it with its outcome (finished ones
   * first, in finishing order); `undefined` when the set is empty. With `token`, it
   * rejects with `CancelledError` if the token is cancelled first; no outcome is lost.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, JoinSet } from "tideline/lifecycle";
   * const token = new CancellationToken();
   * const set = new JoinSet<number>({ token, gate: new Gate() });
   * set.spawn("one", "Background", () => 1);
   * const next = await set.joinNext(token);
   * ```
   */
  joinNext(token?: CancellationToken): Promise<Joined<T> | undefined> {
    const ready = this.#finished.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#running.size === 0) return Promise.resolve(undefined);
    if (token?.isCancelled) return Promise.reject(new CancelledError(token.reason));
    return new Promise<Joined<T> | undefined>((resolve, reject) => {
      const registration = token?.onCancel((reason) => {
        this.#waiters.remove(waiter);
        reject(new CancelledError(reason));
      });
      const waiter: Waiter<T> = {
        resolve: (joined) => {
          registration?.[Symbol.dispose]();
          resolve(joined);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  /**
   * The next finished task with its outcome, if one has finished and not been joined;
   * `undefined` otherwise. Never waits.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, JoinSet } from "tideline/lifecycle";
   * const set = new JoinSet<number>({ token: new CancellationToken(), gate: new Gate() });
   * console.log(set.tryJoinNext()); // undefined
   * ```
   */
  tryJoinNext(): Joined<T> | undefined {
    return this.#finished.shift();
  }

  /**
   * Cancels every running task of the set. Returns at once.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, JoinSet, sleep } from "tideline/lifecycle";
   * const set = new JoinSet({ token: new CancellationToken(), gate: new Gate() });
   * set.spawn("sleeper", "Background", (ctx) => sleep(60_000, ctx.token));
   * set.cancelAll("enough");
   * ```
   */
  cancelAll(reason?: unknown): void {
    for (const task of this.#running) task.cancel(reason);
  }

  /**
   * Cancels every task, then waits for all of them; returns every outcome not joined
   * before, in finishing order.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, JoinSet, sleep } from "tideline/lifecycle";
   * const set = new JoinSet({ token: new CancellationToken(), gate: new Gate() });
   * set.spawn("sleeper", "Background", (ctx) => sleep(60_000, ctx.token));
   * const outcomes = await set.shutdown();
   * console.log(outcomes[0]?.outcome.status); // "cancelled"
   * ```
   */
  async shutdown(reason?: unknown): Promise<Joined<T>[]> {
    this.cancelAll(reason);
    const joined: Joined<T>[] = [];
    for (let next = await this.joinNext(); next !== undefined; next = await this.joinNext()) {
      joined.push(next);
    }
    return joined;
  }

  /** Same as {@linkcode shutdown}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown("join set disposed");
  }
}
