/**
 * Errors of timelines that callers handle.
 *
 * @module
 */
import { TimeoutError } from "../lifecycle/index.js";
import { formatLsn, type Lsn } from "../wal/index.js";

/**
 * `waitLsn` ran out of time. The message names the LSN waited for, the LSN reached
 * and the WAL receiver's status.
 *
 * @example
 * ```ts
 * import { WaitLsnTimeoutError } from "tideline/timeline";
 * // await timeline.waitLsn(lsn, ctx, { timeoutMs: 1000 }) may throw it:
 * // if (e instanceof WaitLsnTimeoutError) console.log(e.lsn, e.reached);
 * ```
 */
export class WaitLsnTimeoutError extends TimeoutError {
  readonly lsn: Lsn;
  readonly reached: Lsn;
  constructor(ms: number, lsn: Lsn, reached: Lsn, walReceiverStatus: string) {
    super(
      ms,
      `Waiting for WAL up to ${formatLsn(lsn)} (reached ${formatLsn(reached)}; WAL receiver: ${walReceiverStatus})`,
    );
    this.name = "WaitLsnTimeoutError";
    this.lsn = lsn;
    this.reached = reached;
  }
}

/**
 * The timeline is shutting down (or has): the operation was refused or abandoned.
 *
 * @example
 * ```ts
 * import { TimelineShutdownError } from "tideline/timeline";
 * new TimelineShutdownError("main").message; // 'Timeline "main" is shutting down'
 * ```
 */
export class TimelineShutdownError extends Error {
  readonly timeline: string;
  constructor(timeline: string) {
    super(`Timeline "${timeline}" is shutting down`);
    this.name = "TimelineShutdownError";
    this.timeline = timeline;
  }
}

/**
 * The timeline is in a state where the operation cannot be served (e.g. `broken`
 * after a failed flush).
 *
 * @example
 * ```ts
 * import { TimelineStateError } from "tideline/timeline";
 * new TimelineStateError("main", "broken", "flush failed").message;
 * ```
 */
export class TimelineStateError extends Error {
  readonly timeline: string;
  readonly state: string;
  constructor(timeline: string, state: string, detail: string) {
    super(`Timeline "${timeline}" is ${state}: ${detail}`);
    this.name = "TimelineStateError";
    this.timeline = timeline;
    this.state = state;
  }
}

/**
 * A layer file or the timeline's index is damaged (CRC mismatch, bad magic,
 * impossible offsets). Names the file and what was wrong.
 *
 * @example
 * ```ts
 * import { LayerCorruptError } from "tideline/timeline";
 * new LayerCorruptError("/data/x.layer", "bad magic").message;
 * ```
 */
export class LayerCorruptError extends Error {
  readonly path: string;
  constructor(path: string, detail: string) {
    super(`Layer file "${path}" is damaged: ${detail}`);
    this.name = "LayerCorruptError";
    this.path = path;
  }
}

/**
 * WAL handed to `ingest` does not continue the timeline: it starts elsewhere than
 * where the stream ended, or comes from another cluster.
 *
 * @example
 * ```ts
 * import { WalDiscontinuityError } from "tideline/timeline";
 * new WalDiscontinuityError("main", 0x2000000n, 0x3000000n).message;
 * ```
 */
export class WalDiscontinuityError extends Error {
  readonly expected: Lsn;
  readonly got: Lsn;
  constructor(timeline: string, expected: Lsn, got: Lsn) {
    super(
      `Timeline "${timeline}" expects WAL at ${formatLsn(expected)}, got WAL starting at ${formatLsn(got)}`,
    );
    this.name = "WalDiscontinuityError";
    this.expected = expected;
    this.got = got;
  }
}

/**
 * Another live process (or another `Timeline` in this one) has the timeline open for
 * writing.
 *
 * @example
 * ```ts
 * import { TimelineInUseError } from "tideline/timeline";
 * new TimelineInUseError("main", 4242).message; // 'Timeline "main" is open for writing by process 4242'
 * ```
 */
export class TimelineInUseError extends Error {
  readonly timeline: string;
  readonly pid: number;
  constructor(timeline: string, pid: number) {
    super(`Timeline "${timeline}" is open for writing by process ${pid}`);
    this.name = "TimelineInUseError";
    this.timeline = timeline;
    this.pid = pid;
  }
}

/**
 * A read needs a layer file that is not on local disk (evicted after its upload, or not
 * downloaded yet after an attach from remote storage), and the timeline has no
 * {@linkcode LayerFetcher} to bring it back. Names the timeline and the layer.
 *
 * @example
 * ```ts
 * import { LayerNotLocalError } from "tideline/timeline";
 * new LayerNotLocalError("main", "0000000001000000-0000000001A3C2D8.layer").message;
 * ```
 */
export class LayerNotLocalError extends Error {
  readonly timeline: string;
  readonly file: string;
  constructor(timeline: string, file: string) {
    super(
      `Layer ${file} of timeline "${timeline}" is not on local disk (evicted, or not downloaded yet) and the timeline was opened without a layer fetcher: read it with remote storage configured`,
    );
    this.name = "LayerNotLocalError";
    this.timeline = timeline;
    this.file = file;
  }
}
