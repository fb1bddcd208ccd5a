/**
 * Supervised tasks: every task has a name, a kind, a child token of its owner's and a
 * guard of its owner's gate, and ends by releasing both.
 *
 * @module
 */
import type { CancellationToken } from "./cancellation_token.js";
import { CancelledError } from "./errors.js";
import type { Gate, GateGuard } from "./gate.js";
import { type ContextTask, RequestContext } from "./request_context.js";
import type { TaskKind } from "./task_kind.js";
import {
  globalTaskRegistry,
  type RegisteredTask,
  type TaskInfo,
  type TaskRegistry,
  type TaskState,
} from "./task_registry.js";

/** How a task ended. `join()` resolves with it; it never rejects. */
export type TaskOutcome<T> =
  | { readonly status: "succeeded"; readonly value: T }
  | { readonly status: "failed"; readonly error: unknown }
  | { readonly status: "cancelled"; readonly error: CancelledError };

/** Who owns a task: the token its token derives from and the gate it holds open. */
export interface TaskOwner {
  /** The owner's token; the task runs on a child of it. */
  readonly token: CancellationToken;
  /** The owner's gate; the task holds a guard of it for its whole life. */
  readonly gate: Gate;
  /** The context of the spawning task, if any: it becomes the new task's parent. */
  readonly parent?: RequestContext | undefined;
  /** Where to register; default: the parent context's registry, else the global one. */
  readonly registry?: TaskRegistry | undefined;
}

/** What {@linkcode spawn} needs. */
export interface SpawnOptions extends TaskOwner {
  /** A name for operators (`walreceiver manager`, `flush 0/16B3D88-0/2000000`). */
  readonly name: string;
  /** What the task is for. */
  readonly kind: TaskKind;
}

let nextTaskId = 1;

/**
 * A handle of a running (or ended) task. {@linkcode join} resolves with its outcome
 * only after the task has ended *and* released its gate guard and token.
 *
 * @example
 * ```ts
 * import { CancellationToken, Gate, spawn, sleep } from "tideline/lifecycle";
 * const owner = { token: new CancellationToken(), gate: new Gate("timeline") };
 * const task = spawn({ ...owner, name: "ticker", kind: "Background" }, async (ctx) => {
 *   while (true) await sleep(1000, ctx.token);
 * });
 * task.cancel("demo over");
 * console.log((await task.join()).status); // "cancelled"
 * ```
 */
export class Task<T> implements RegisteredTask, ContextTask {
  readonly id: number;
  readonly name: string;
  readonly kind: TaskKind;
  /** The task's own token (a child of its owner's). */
  readonly token: CancellationToken;
  /** The task that spawned it, if any. */
  readonly parent: ContextTask | undefined;
  /** When it started, in milliseconds since the epoch. */
  readonly startedAt: number;
  readonly #guard: GateGuard;
  #outcome: TaskOutcome<T> | undefined;
  #endListeners: ((outcome: TaskOutcome<T>) => void)[] | undefined;
  readonly #done: Promise<TaskOutcome<T>>;

  /** @internal Use {@linkcode spawn}. */
  constructor(
    options: SpawnOptions,
    guard: GateGuard,
    token: CancellationToken,
    registry: TaskRegistry,
    body: (ctx: RequestContext) => Promise<T> | T,
  ) {
    this.id = nextTaskId++;
    this.name = options.name;
    this.kind = options.kind;
    this.token = token;
    this.parent = options.parent?.task;
    this.startedAt = Date.now();
    this.#guard = guard;
    registry.add(this);
    const ctx = RequestContext.forTask(this, token, registry);
    this.#done = this.#run(ctx, registry, body);
  }

  async #run(
    ctx: RequestContext,
    registry: TaskRegistry,
    body: (ctx: RequestContext) => Promise<T> | T,
  ): Promise<TaskOutcome<T>> {
    let outcome: TaskOutcome<T>;
    try {
      await undefined; // the body starts after spawn() has returned the handle
      outcome = { status: "succeeded", value: await body(ctx) };
    } catch (error) {
      outcome =
        error instanceof CancelledError
          ? { status: "cancelled", error }
          : { status: "failed", error };
    }
    this.#outcome = outcome;
    // Cancelling (rather than only unlinking) the token stops anything the body left
    // running on it: nothing outlives its task unnoticed. It also unlinks the token.
    // A throwing onCancel hook must not keep the guard, the registry entry or join():
    // its error goes to the registry's observer like a failure nobody joins.
    const hookErrors = this.token.cancel(`task "${this.name}" ended`);
    const hookError =
      hookErrors.length > 0
        ? new AggregateError(
            hookErrors,
            `${hookErrors.length} onCancel callback(s) of task "${this.name}" threw`,
          )
        : undefined;
    this.#guard.release();
    registry.remove(this, outcome.status === "failed" ? outcome.error : hookError);
    const listeners = this.#endListeners;
    this.#endListeners = undefined;
    if (listeners !== undefined) for (const listener of listeners) listener(outcome);
    return outcome;
  }

  /**
   * Calls `listener(outcome)` synchronously when the task has ended and released its
   * guard (at once if it already has). For bookkeeping such as {@linkcode JoinSet}'s;
   * a listener must not throw.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn } from "tideline/lifecycle";
   * const t = spawn({ token: new CancellationToken(), gate: new Gate(), name: "n", kind: "Background" }, () => 1);
   * t.onEnded((outcome) => console.log(outcome.status)); // later: "succeeded"
   * await t.join();
   * ```
   */
  onEnded(listener: (outcome: TaskOutcome<T>) => void): void {
    if (this.#outcome !== undefined) listener(this.#outcome);
    else if (this.#endListeners === undefined) this.#endListeners = [listener];
    else this.#endListeners.push(listener);
  }

  /**
   * Where the task is: `running`, `cancelling` (its token is cancelled, it has not
   * ended yet), or how it ended.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn } from "tideline/lifecycle";
   * const t = spawn({ token: new CancellationToken(), gate: new Gate(), name: "n", kind: "Background" }, () => 1);
   * console.log(t.state); // "running"
   * await t.join();
   * console.log(t.state); // "succeeded"
   * ```
   */
  get state(): TaskState {
    if (this.#outcome !== undefined) return this.#outcome.status;
    return this.token.isCancelled ? "cancelling" : "running";
  }

  /**
   * Whether the task has ended and released its guard.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn } from "tideline/lifecycle";
   * const t = spawn({ token: new CancellationToken(), gate: new Gate(), name: "n", kind: "Background" }, () => 1);
   * await t.join();
   * console.log(t.isFinished); // true
   * ```
   */
  get isFinished(): boolean {
    return this.#outcome !== undefined;
  }

  /**
   * Cancels the task's token (and so its subtree). Returns at once; {@linkcode join}
   * to wait for the end.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn, sleep } from "tideline/lifecycle";
   * const t = spawn({ token: new CancellationToken(), gate: new Gate(), name: "n", kind: "Background" },
   *   (ctx) => sleep(10_000, ctx.token));
   * t.cancel();
   * await t.join();
   * ```
   */
  cancel(reason?: unknown): void {
    this.token.cancel(reason);
  }

  /**
   * Resolves with the task's outcome once it has ended and released its guard; never
   * rejects for the task's sake. With `token`, it rejects with `CancelledError` if the
   * *waiter's* token is cancelled first (the task goes on).
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn } from "tideline/lifecycle";
   * const t = spawn({ token: new CancellationToken(), gate: new Gate(), name: "n", kind: "Background" },
   *   () => { throw new Error("boom"); });
   * const outcome = await t.join();
   * if (outcome.status === "failed") console.log((outcome.error as Error).message); // "boom"
   * ```
   */
  join(token?: CancellationToken): Promise<TaskOutcome<T>> {
    return token === undefined ? this.#done : token.race(this.#done);
  }

  /**
   * Like {@linkcode join}, but resolves with the value and rejects with the task's
   * error (or its `CancelledError`).
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn } from "tideline/lifecycle";
   * const t = spawn({ token: new CancellationToken(), gate: new Gate(), name: "n", kind: "Background" }, () => 42);
   * console.log(await t.result()); // 42
   * ```
   */
  async result(token?: CancellationToken): Promise<T> {
    const outcome = await this.join(token);
    if (outcome.status === "succeeded") return outcome.value;
    throw outcome.error;
  }

  /**
   * A snapshot for the task tree.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn } from "tideline/lifecycle";
   * const t = spawn({ token: new CancellationToken(), gate: new Gate("g"), name: "n", kind: "Background" }, () => 1);
   * console.log(t.info().gate); // "g"
   * ```
   */
  info(): TaskInfo {
    return {
      id: this.id,
      name: this.name,
      kind: this.kind,
      state: this.state,
      parentId: this.parent?.id,
      startedAt: this.startedAt,
      gate: this.#guard.gate.name,
    };
  }
}

/**
 * Starts a task: enters the owner's gate (throwing `GateClosedError`, with nothing
 * started, if it is closing), derives a child of the owner's token, registers the
 * task and runs `body` with the task's context from the next microtask on. When the
 * body ends (value, error or cancellation) the task cancels its token (stopping
 * anything the body left running on it, and unlinking it from the owner's), releases
 * its guard, leaves the registry, and only then does `join()` resolve. A failing task
 * is never an unhandled rejection: its error is in its outcome (and reported to the
 * registry's observer).
 *
 * @example
 * ```ts
 * import { CancellationToken, Gate, TaskKind, spawn, sleep } from "tideline/lifecycle";
 * const timeline = { token: new CancellationToken(), gate: new Gate("timeline main") };
 * const manager = spawn(
 *   { ...timeline, name: "walreceiver manager", kind: TaskKind.WalReceiverManager },
 *   async (ctx) => {
 *     while (!ctx.token.isCancelled) await sleep(100, ctx.token).catch(() => {});
 *   },
 * );
 * timeline.token.cancel();
 * await timeline.gate.close(); // resolves once the manager has ended
 * console.log(manager.state); // "succeeded"
 * ```
 */
export function spawn<T>(
  options: SpawnOptions,
  body: (ctx: RequestContext) => Promise<T> | T,
): Task<T> {
  if (typeof options.name !== "string" || options.name.length === 0) {
    throw new TypeError(`A task needs a non-empty name, got ${JSON.stringify(options.name)}`);
  }
  if (typeof options.kind !== "string" || options.kind.length === 0) {
    throw new TypeError(`Task "${options.name}" needs a kind, got ${JSON.stringify(options.kind)}`);
  }
  if (typeof body !== "function") {
    throw new TypeError(`Task "${options.name}" needs a function body, got ${typeof body}`);
  }
  const registry = options.registry ?? options.parent?.registry ?? globalTaskRegistry;
  const guard = options.gate.enter(`${options.kind} ${options.name}`);
  const token = options.token.child();
  return new Task(options, guard, token, registry, body);
}
