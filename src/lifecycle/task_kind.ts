/**
 * The kinds of task Tideline runs. A kind says what a task is for; it drives
 * assertions (a WAL receiver task must not wait on its own timeline's LSN), metrics
 * (live tasks by kind) and the task tree an operator inspects. Code that reuses
 * the lifecycle library on its own may use kinds of its own: any string is a kind.
 *
 * @example
 * ```ts
 * import { TaskKind } from "tideline/lifecycle";
 * const kind: TaskKind = TaskKind.WalReceiverManager;
 * const custom: TaskKind = "MyCompactor";
 * ```
 */
export const TaskKind = {
  /** The top of a process or a command (`tideline ingest`'s main). */
  Main: "Main",
  /** Chooses a WAL source for one timeline and runs its connection. */
  WalReceiverManager: "WalReceiverManager",
  /** Runs the replication protocol of one connection, decodes and ingests WAL. */
  WalReceiverConnectionHandler: "WalReceiverConnectionHandler",
  /** Owns a replication connection's socket: reads it, answers keepalives. */
  WalReceiverConnectionPoller: "WalReceiverConnectionPoller",
  /** Writes frozen in-memory layers to layer files. */
  LayerFlush: "LayerFlush",
  /** Uploads layer files and the index to remote storage. */
  RemoteUpload: "RemoteUpload",
  /** Downloads layer files from remote storage. */
  RemoteDownload: "RemoteDownload",
  /** Serves one HTTP request. */
  HttpRequest: "HttpRequest",
  /** Shuts a timeline down. */
  TimelineShutdown: "TimelineShutdown",
  /** Anything else that runs in the background. */
  Background: "Background",
  /** Unit tests. */
  UnitTest: "UnitTest",
} as const;

/** A task kind: one of {@linkcode TaskKind}'s values, or a string of the caller's own. */
export type TaskKind = (typeof TaskKind)[keyof typeof TaskKind] | (string & {});

/**
 * The kinds of the three tasks of a WAL receiver.
 *
 * @example
 * ```ts
 * import { WAL_RECEIVER_KINDS } from "tideline/lifecycle";
 * console.log(WAL_RECEIVER_KINDS.has("WalReceiverConnectionHandler")); // true
 * ```
 */
export const WAL_RECEIVER_KINDS: ReadonlySet<TaskKind> = new Set<TaskKind>([
  TaskKind.WalReceiverManager,
  TaskKind.WalReceiverConnectionHandler,
  TaskKind.WalReceiverConnectionPoller,
]);
