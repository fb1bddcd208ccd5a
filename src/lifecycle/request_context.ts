/**
 * The context every blocking call in Tideline takes: which task it runs in, of what
 * kind, and that task's cancellation token.
 *
 * @module
 */
import type { CancellationToken } from "./cancellation_token.js";
import type { TaskKind } from "./task_kind.js";
import { globalTaskRegistry, type TaskInfo, type TaskRegistry } from "./task_registry.js";

/** The part of a task a context refers to. */
export interface ContextTask {
  readonly id: number;
  readonly kind: TaskKind;
  readonly parent: ContextTask | undefined;
  info(): TaskInfo;
}

/**
 * A request context: the kind of work, the kind and token of the task it runs in,
 * and the registry its spawned tasks go to. Unlike Neon's, it carries the task's
 * cancellation token, so every wait below it honours the right token.
 *
 * - {@linkcode child} is for more work inside the same task (same token);
 * - {@linkcode detachedChild} is for a new task (with that task's own token).
 *
 * @example
 * ```ts
 * import { CancellationToken, RequestContext, TaskKind, sleep } from "tideline/lifecycle";
 * const ctx = RequestContext.root(TaskKind.Main, new CancellationToken());
 * const flushCtx = ctx.child(TaskKind.LayerFlush);
 * await sleep(1, flushCtx.token);
 * ```
 */
export class RequestContext {
  /** The kind of work this context is for. */
  readonly kind: TaskKind;
  /** The kind of the task this context runs in. */
  readonly taskKind: TaskKind;
  /** The token of the task this context runs in: every wait takes it. */
  readonly token: CancellationToken;
  /** The task this context runs in (`undefined` for a root context). */
  readonly task: ContextTask | undefined;
  /** Where tasks spawned from this context register. */
  readonly registry: TaskRegistry;

  private constructor(
    kind: TaskKind,
    taskKind: TaskKind,
    token: CancellationToken,
    task: ContextTask | undefined,
    registry: TaskRegistry,
  ) {
    this.kind = kind;
    this.taskKind = taskKind;
    this.token = token;
    this.task = task;
    this.registry = registry;
  }

  /**
   * A context for code that does not run in a spawned task: `main`, a test.
   *
   * @example
   * ```ts
   * import { CancellationToken, RequestContext } from "tideline/lifecycle";
   * const ctx = RequestContext.root("Main", new CancellationToken());
   * ```
   */
  static root(
    kind: TaskKind,
    token: CancellationToken,
    registry: TaskRegistry = globalTaskRegistry,
  ): RequestContext {
    return new RequestContext(kind, kind, token, undefined, registry);
  }

  /** @internal The context `spawn` hands to a new task's body. */
  static forTask(
    task: ContextTask,
    token: CancellationToken,
    registry: TaskRegistry,
  ): RequestContext {
    return new RequestContext(task.kind, task.kind, token, task, registry);
  }

  /**
   * A context for other work inside the same task: same token, same task.
   *
   * @example
   * ```ts
   * import { CancellationToken, RequestContext } from "tideline/lifecycle";
   * const ctx = RequestContext.root("HttpRequest", new CancellationToken());
   * const waitCtx = ctx.child("WaitLsn");
   * console.log(waitCtx.taskKind, waitCtx.token === ctx.token); // "HttpRequest" true
   * ```
   */
  child(kind: TaskKind): RequestContext {
    return new RequestContext(kind, this.taskKind, this.token, this.task, this.registry);
  }

  /**
   * A context for a new piece of work with a token of its own (normally a child of
   * this context's token); its task kind is `kind`.
   *
   * @example
   * ```ts
   * import { CancellationToken, RequestContext } from "tideline/lifecycle";
   * const ctx = RequestContext.root("Main", new CancellationToken());
   * using token = ctx.token.child();
   * const bg = ctx.detachedChild("Background", token);
   * ```
   */
  detachedChild(kind: TaskKind, token: CancellationToken): RequestContext {
    return new RequestContext(kind, kind, token, this.task, this.registry);
  }

  /**
   * Whether this context runs inside `task` or one of the tasks it spawned.
   *
   * @example
   * ```ts
   * import { CancellationToken, Gate, spawn } from "tideline/lifecycle";
   * const owner = { token: new CancellationToken(), gate: new Gate() };
   * const outer = spawn({ ...owner, name: "outer", kind: "Background" }, (ctx) => ctx.isWithin(outer));
   * console.log((await outer.join()).status); // "succeeded"
   * ```
   */
  isWithin(task: { readonly id: number }): boolean {
    for (let t = this.task; t !== undefined; t = t.parent) if (t.id === task.id) return true;
    return false;
  }

  /**
   * Throws `CancelledError` if this context's token is cancelled.
   *
   * @example
   * ```ts
   * import { CancellationToken, RequestContext } from "tideline/lifecycle";
   * RequestContext.root("Main", new CancellationToken()).throwIfCancelled();
   * ```
   */
  throwIfCancelled(): void {
    this.token.throwIfCancelled();
  }
}
