/**
 * Errors of the lifecycle library that callers are expected to catch and handle.
 * Misuse (a bad argument, a released guard used again) throws the built-in
 * `TypeError` or `RangeError` instead.
 *
 * @module
 */

/**
 * Thrown by a wait whose cancellation token was cancelled. `reason` is what was
 * passed to {@linkcode CancellationToken.cancel} (if anything).
 *
 * @example
 * ```ts
 * import { CancellationToken, CancelledError, sleep } from "tideline/lifecycle";
 * const token = new CancellationToken();
 * token.cancel("shutting down");
 * try {
 *   await sleep(1000, token);
 * } catch (e) {
 *   if (e instanceof CancelledError) console.log(e.reason); // "shutting down"
 * }
 * ```
 */
export class CancelledError extends Error {
  /** The reason given to `cancel()`, or `undefined`. */
  readonly reason: unknown;
  constructor(reason?: unknown) {
    super(
      reason === undefined ? "Operation cancelled" : `Operation cancelled: ${describe(reason)}`,
    );
    this.name = "CancelledError";
    this.reason = reason;
  }
}

/**
 * Thrown by {@linkcode Gate.enter} (and everything that enters a gate, such as
 * `spawn`) once the gate has begun closing.
 *
 * @example
 * ```ts
 * import { Gate, GateClosedError } from "tideline/lifecycle";
 * const gate = new Gate("timeline main");
 * await gate.close();
 * try {
 *   gate.enter("flush");
 * } catch (e) {
 *   console.log(e instanceof GateClosedError); // true
 * }
 * ```
 */
export class GateClosedError extends Error {
  /** The name of the gate that refused entry. */
  readonly gate: string;
  /** Who tried to enter. */
  readonly holder: string;
  constructor(gate: string, holder: string) {
    super(`Gate "${gate}" is closed: cannot enter as "${holder}"`);
    this.name = "GateClosedError";
    this.gate = gate;
    this.holder = holder;
  }
}

/**
 * Thrown by a wait that ran out of time (see {@linkcode withTimeout} and
 * {@linkcode SeqWait.wait}).
 *
 * @example
 * ```ts
 * import { CancellationToken, TimeoutError, withTimeout, sleep } from "tideline/lifecycle";
 * const root = new CancellationToken();
 * try {
 *   await withTimeout(root, 10, (token) => sleep(1000, token));
 * } catch (e) {
 *   console.log(e instanceof TimeoutError, (e as TimeoutError).ms); // true 10
 * }
 * ```
 */
export class TimeoutError extends Error {
  /** The time limit that passed, in milliseconds. */
  readonly ms: number;
  constructor(ms: number, what = "Operation") {
    super(`${what} timed out after ${ms} ms`);
    this.name = "TimeoutError";
    this.ms = ms;
  }
}

/**
 * Thrown by {@linkcode Channel.send} on a closed channel, and by
 * {@linkcode Channel.recv} on a closed channel that has been drained.
 *
 * @example
 * ```ts
 * import { CancellationToken, Channel, ChannelClosedError } from "tideline/lifecycle";
 * const token = new CancellationToken();
 * const ch = new Channel<number>({ capacity: 1 });
 * ch.close();
 * await ch.send(1, token).catch((e) => console.log(e instanceof ChannelClosedError)); // true
 * ```
 */
export class ChannelClosedError extends Error {
  /** The channel's name. */
  readonly channel: string;
  constructor(channel: string) {
    super(`Channel "${channel}" is closed`);
    this.name = "ChannelClosedError";
    this.channel = channel;
  }
}

/**
 * The default error that {@linkcode SeqWait.shutdown} gives to its waiters.
 *
 * @example
 * ```ts
 * import { CancellationToken, SeqWait, ShutdownError } from "tideline/lifecycle";
 * const lsn = new SeqWait(0n);
 * const waiting = lsn.wait(100n, { token: new CancellationToken() });
 * lsn.shutdown();
 * await waiting.catch((e) => console.log(e instanceof ShutdownError)); // true
 * ```
 */
export class ShutdownError extends Error {
  constructor(what: string) {
    super(`${what} is shutting down`);
    this.name = "ShutdownError";
  }
}

/** Renders a cancellation reason for a message without throwing. */
export function describe(value: unknown): string {
  if (value instanceof Error) return value.message;
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
