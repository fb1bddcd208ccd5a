/**
 * `tideline/lifecycle`: structured lifecycles for Node.js services, with zero runtime
 * dependencies. Cancellation tokens in a tree, hierarchical gates, supervised tasks in
 * an inspectable registry, a request context that carries the task's token, and
 * token-aware waits (sleep, timeout, channel, SeqWait).
 *
 * Rules it is built for: no fire-and-forget promise; every task has a name, a kind, a
 * child token of its owner's and a guard of its owner's gate, and ends by releasing
 * both; every wait takes the caller's token; shutdown = cancel, then close the gate.
 *
 * @example
 * ```ts
 * import { CancellationToken, Gate, TaskKind, spawn, sleep } from "tideline/lifecycle";
 * const timeline = { token: new CancellationToken(), gate: new Gate("timeline main") };
 * spawn({ ...timeline, name: "ticker", kind: TaskKind.Background }, async (ctx) => {
 *   for (;;) await sleep(1000, ctx.token);
 * });
 * timeline.token.cancel("shutdown");
 * await timeline.gate.close();
 * ```
 *
 * @module
 */
export { CancellationToken } from "./cancellation_token.js";
export { Channel, type ChannelOptions } from "./channel.js";
export {
  CancelledError,
  ChannelClosedError,
  GateClosedError,
  ShutdownError,
  TimeoutError,
} from "./errors.js";
export {
  Gate,
  GateGuard,
  type GateHolder,
  type GateObserver,
  type GateOptions,
  type KeptClosingEvent,
  type SlowCloseEvent,
} from "./gate.js";
export { type Joined, JoinSet } from "./join_set.js";
export { type ContextTask, RequestContext } from "./request_context.js";
export { SeqWait, type SeqWaitOptions } from "./seq_wait.js";
export { sleep } from "./sleep.js";
export { type SpawnOptions, spawn, Task, type TaskOutcome, type TaskOwner } from "./task.js";
export { TaskKind, WAL_RECEIVER_KINDS } from "./task_kind.js";
export {
  globalTaskRegistry,
  type TaskInfo,
  TaskRegistry,
  type TaskRegistryObserver,
  type TaskState,
  type TaskTreeNode,
} from "./task_registry.js";
export { withTimeout } from "./timeout.js";
