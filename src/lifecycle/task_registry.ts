/**
 * The registry of live tasks, which renders them as a tree. It holds a task only
 * while it runs: ended tasks are removed, never kept alive.
 *
 * @module
 */
import type { TaskKind } from "./task_kind.js";

/** The state of a task. */
export type TaskState = "running" | "cancelling" | "succeeded" | "failed" | "cancelled";

/** A snapshot of one live task. */
export interface TaskInfo {
  /** Unique within the process, increasing. */
  readonly id: number;
  readonly name: string;
  readonly kind: TaskKind;
  readonly state: TaskState;
  /** The id of the task that spawned it, if any. */
  readonly parentId: number | undefined;
  /** When it started, in milliseconds since the epoch. */
  readonly startedAt: number;
  /** The gate whose guard it holds. */
  readonly gate: string;
}

/** A task with its live children, as {@linkcode TaskRegistry.tree} renders it. */
export interface TaskTreeNode extends TaskInfo {
  readonly children: TaskTreeNode[];
}

/** Something the registry can describe: a running task. */
export interface RegisteredTask {
  readonly id: number;
  info(): TaskInfo;
}

/** Told when a registered task ends, e.g. to log failures nobody joins. */
export interface TaskRegistryObserver {
  taskEnded?(info: TaskInfo, error: unknown): void;
}

/**
 * The live tasks of a process (or of a test). `spawn` registers every task it starts
 * here and removes it when it ends.
 *
 * @example
 * ```ts
 * import { CancellationToken, Gate, TaskRegistry, spawn, sleep } from "tideline/lifecycle";
 * const registry = new TaskRegistry();
 * const token = new CancellationToken();
 * const gate = new Gate("demo");
 * const task = spawn({ name: "sleeper", kind: "Background", token, gate, registry },
 *   (ctx) => sleep(60_000, ctx.token));
 * console.log(registry.tree().map((t) => t.name)); // ["sleeper"]
 * token.cancel();
 * await task.join();
 * console.log(registry.size); // 0
 * ```
 */
export class TaskRegistry {
  readonly #tasks = new Map<number, RegisteredTask>();
  /** Told when a task ends. */
  observer: TaskRegistryObserver | undefined;

  constructor(observer?: TaskRegistryObserver) {
    this.observer = observer;
  }

  /** @internal Called by `spawn`. */
  add(task: RegisteredTask): void {
    this.#tasks.set(task.id, task);
  }

  /** @internal Called when a task has ended and released its guard. */
  remove(task: RegisteredTask, error: unknown): void {
    if (!this.#tasks.delete(task.id)) return;
    if (error !== undefined) this.observer?.taskEnded?.(task.info(), error);
  }

  /**
   * How many tasks are live.
   *
   * @example
   * ```ts
   * import { TaskRegistry } from "tideline/lifecycle";
   * console.log(new TaskRegistry().size); // 0
   * ```
   */
  get size(): number {
    return this.#tasks.size;
  }

  /**
   * Every live task, in start order.
   *
   * @example
   * ```ts
   * import { globalTaskRegistry } from "tideline/lifecycle";
   * for (const t of globalTaskRegistry.list()) console.log(t.id, t.kind, t.name, t.state);
   * ```
   */
  list(): TaskInfo[] {
    return [...this.#tasks.values()].map((t) => t.info());
  }

  /**
   * Live tasks counted by kind.
   *
   * @example
   * ```ts
   * import { globalTaskRegistry } from "tideline/lifecycle";
   * console.log(globalTaskRegistry.countByKind()); // Map { "WalReceiverManager" => 1, ... }
   * ```
   */
  countByKind(): Map<TaskKind, number> {
    const counts = new Map<TaskKind, number>();
    for (const t of this.#tasks.values()) {
      const kind = t.info().kind;
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
    }
    return counts;
  }

  /**
   * The live tasks as a forest: each task under the task that spawned it. A task whose
   * parent has already ended is shown as a root (its `parentId` still says who it was).
   *
   * @example
   * ```ts
   * import { globalTaskRegistry } from "tideline/lifecycle";
   * console.log(JSON.stringify(globalTaskRegistry.tree(), null, 2));
   * ```
   */
  tree(): TaskTreeNode[] {
    const nodes = new Map<number, TaskTreeNode>();
    for (const t of this.#tasks.values()) nodes.set(t.id, { ...t.info(), children: [] });
    const roots: TaskTreeNode[] = [];
    for (const node of nodes.values()) {
      const parent = node.parentId === undefined ? undefined : nodes.get(node.parentId);
      if (parent === undefined) roots.push(node);
      else parent.children.push(node);
    }
    return roots;
  }
}

/**
 * The registry `spawn` uses when given none: the process's live tasks, which the
 * HTTP API's `GET /v1/tasks` renders.
 *
 * @example
 * ```ts
 * import { globalTaskRegistry } from "tideline/lifecycle";
 * console.log(globalTaskRegistry.size);
 * ```
 */
export const globalTaskRegistry: TaskRegistry = new TaskRegistry();
