/**
 * Hierarchical gates: "refuse new work in this subtree and wait for exactly the work
 * already in it", while the parent stays open.
 *
 * @module
 */
import type { CancellationToken } from "./cancellation_token.js";
import { GateClosedError } from "./errors.js";

/** One guard inside a gate, as {@linkcode Gate.holders} reports it. */
export interface GateHolder {
  /** The full name of the gate the guard entered (`timeline main/walreceiver`). */
  readonly gate: string;
  /** Who holds it, as passed to {@linkcode Gate.enter}. */
  readonly holder: string;
  /** When it entered, in milliseconds since the epoch. */
  readonly since: number;
}

/** What {@linkcode GateObserver.slowClose} is told. */
export interface SlowCloseEvent {
  /** The gate whose `close()` is taking long. */
  readonly gate: string;
  /** Milliseconds since `close()` was called. */
  readonly elapsedMs: number;
  /** Everyone still inside the gate or its children. */
  readonly holders: readonly GateHolder[];
}

/** What {@linkcode GateObserver.keptClosing} is told. */
export interface KeptClosingEvent {
  /** The gate whose slow close this holder delayed. */
  readonly gate: string;
  /** The holder that has just released its guard. */
  readonly holder: GateHolder;
  /** Milliseconds between `close()` and this release. */
  readonly elapsedMs: number;
}

/**
 * Hooks through which a gate's owner hears about slow closes (to log them). Child
 * gates use their parent's observer unless given one.
 */
export interface GateObserver {
  /** `close()` has been waiting for longer than the threshold; these are still inside. */
  slowClose?(event: SlowCloseEvent): void;
  /** A holder released its guard after a slow close was reported: it kept the gate. */
  keptClosing?(event: KeptClosingEvent): void;
}

/** Options of a {@linkcode Gate}. */
export interface GateOptions {
  /** After how many milliseconds a pending `close()` reports its holders. Default 100. */
  slowCloseMs?: number;
  /** Where slow closes are reported. Default: nowhere. */
  observer?: GateObserver;
}

const OPEN = 0;
const CLOSING = 1;
const CLOSED = 2;

let releaseGuard: (guard: GateGuard) => void;

/**
 * A guard of a {@linkcode Gate}: while it is held, the gate (and every ancestor gate)
 * cannot finish closing. Release it exactly when the work it covers is over; it is
 * `Disposable`, so `using guard = gate.enter("flush")` releases it at scope exit.
 *
 * @example
 * ```ts
 * import { Gate } from "tideline/lifecycle";
 * const gate = new Gate("timeline main");
 * {
 *   using guard = gate.enter("flush");
 *   console.log(gate.holders().map((h) => h.holder)); // ["flush"]
 * }
 * await gate.close(); // resolves at once: the guard was released at scope exit
 * ```
 */
export class GateGuard implements Disposable {
  /** The gate this guard entered. */
  readonly gate: Gate;
  /** Who holds it. */
  readonly holder: string;
  /** When it entered, in milliseconds since the epoch. */
  readonly since: number;
  #released = false;

  /** @internal Use {@linkcode Gate.enter}. */
  constructor(gate: Gate, holder: string) {
    this.gate = gate;
    this.holder = holder;
    this.since = Date.now();
  }

  /**
   * Whether {@linkcode release} has been called.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const guard = new Gate().enter();
   * guard.release();
   * console.log(guard.isReleased); // true
   * ```
   */
  get isReleased(): boolean {
    return this.#released;
  }

  /**
   * Leaves the gate. Idempotent: a second call does nothing (it never frees another
   * holder's place).
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const gate = new Gate();
   * const guard = gate.enter("upload");
   * guard.release();
   * guard.release(); // no effect
   * await gate.close();
   * ```
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    releaseGuard(this);
  }

  /**
   * Enters the same gate again as a separate guard (to hand to another piece of
   * work), or returns `undefined` if the gate has begun closing.
   * Throws `TypeError` when called on a released guard.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const gate = new Gate();
   * using guard = gate.enter("handler");
   * using copy = guard.tryClone("poller");
   * console.log(copy?.holder); // "poller"
   * ```
   */
  tryClone(holder: string = this.holder): GateGuard | undefined {
    if (this.#released) {
      throw new TypeError(
        `Cannot clone released guard "${this.holder}" of gate "${this.gate.name}"`,
      );
    }
    return this.gate.isClosing ? undefined : this.gate.enter(holder);
  }

  /** Same as {@linkcode release}. */
  [Symbol.dispose](): void {
    this.release();
  }
}

/**
 * A gate counts the work inside it. {@linkcode enter} never blocks: it returns a
 * guard, or throws {@linkcode GateClosedError} once closing has begun.
 * {@linkcode close} refuses new entries at once and resolves when every guard is
 * released.
 *
 * Gates are hierarchical: {@linkcode child} makes a gate whose guards (and its
 * children's) hold this gate open too. Closing a gate closes its children first;
 * closing a child waits only for the child's own subtree while the parent stays
 * open. That is how a timeline stops and awaits *just* its WAL receiver, then
 * flushes, then closes itself.
 *
 * A close that takes longer than `slowCloseMs` (default 100) reports who is still
 * inside to the owner's {@linkcode GateObserver}; those who leave afterwards are
 * reported as having kept it.
 *
 * @example
 * ```ts
 * import { Gate } from "tideline/lifecycle";
 * const timeline = new Gate("timeline main");
 * const walreceiver = timeline.child("walreceiver");
 * const ingest = walreceiver.enter("connection handler");
 * const flush = timeline.enter("flush");
 * const stopped = walreceiver.close(); // the timeline stays open
 * ingest.release();
 * await stopped;
 * flush.release();
 * await timeline.close();
 * ```
 */
export class Gate {
  /** The full name: the parent's name, a slash, then the child's own name. */
  readonly name: string;
  #parent: Gate | undefined;
  #children: Set<Gate> | undefined;
  readonly #guards = new Set<GateGuard>();
  #state = OPEN;
  #closePromise: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  #closeStartedAt = 0;
  #slowReported = false;
  readonly #slowCloseMs: number;
  readonly #observer: GateObserver | undefined;

  static {
    releaseGuard = (guard) => {
      const gate = guard.gate;
      gate.#guards.delete(guard);
      if (gate.#state === OPEN) return;
      gate.#reportLateRelease(guard);
      if (gate.#guards.size === 0) gate.#drained?.();
    };
  }

  /**
   * Creates a root gate.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const gate = new Gate("timeline main", {
   *   slowCloseMs: 100,
   *   observer: { slowClose: (e) => console.warn("gate closing slowly", e) },
   * });
   * ```
   */
  constructor(name = "gate", options: GateOptions = {}) {
    this.name = name;
    this.#slowCloseMs = checkThreshold(options.slowCloseMs ?? 100);
    this.#observer = options.observer;
  }

  static #childOf(parent: Gate, name: string, options: GateOptions): Gate {
    const observer = options.observer ?? parent.#observer;
    const gate = new Gate(`${parent.name}/${name}`, {
      slowCloseMs: options.slowCloseMs ?? parent.#slowCloseMs,
      ...(observer !== undefined ? { observer } : {}),
    });
    gate.#parent = parent;
    if (parent.#children === undefined) parent.#children = new Set();
    parent.#children.add(gate);
    return gate;
  }

  /**
   * Makes a child gate. Its guards hold this gate open; closing this gate closes it
   * first; closing it waits only for its own subtree. Throws
   * {@linkcode GateClosedError} if this gate has begun closing.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const timeline = new Gate("timeline main");
   * const walreceiver = timeline.child("walreceiver");
   * console.log(walreceiver.name); // "timeline main/walreceiver"
   * ```
   */
  child(name = "child", options: GateOptions = {}): Gate {
    if (this.#state !== OPEN) throw new GateClosedError(this.name, `child gate ${name}`);
    return Gate.#childOf(this, name, options);
  }

  /**
   * Enters the gate. Never blocks: returns a guard, or throws
   * {@linkcode GateClosedError} if this gate (or an ancestor) has begun closing.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const gate = new Gate();
   * using guard = gate.enter("flush");
   * ```
   */
  enter(holder = "anonymous"): GateGuard {
    if (this.#state !== OPEN) throw new GateClosedError(this.name, holder);
    const guard = new GateGuard(this, holder);
    this.#guards.add(guard);
    return guard;
  }

  /**
   * Closes the gate: refuses new entries into it and every descendant at once, closes
   * the child gates, and resolves when every guard of the subtree is released. Calling
   * it again returns the same promise. With a `token`, the returned promise rejects
   * with `CancelledError` when the token is cancelled first (the gate still closes).
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const gate = new Gate();
   * const guard = gate.enter();
   * const closed = gate.close();
   * console.log(gate.isClosing, gate.isClosed); // true false
   * guard.release();
   * await closed;
   * console.log(gate.isClosed); // true
   * ```
   */
  close(token?: CancellationToken): Promise<void> {
    const closing = this.#beginClose(true);
    return token === undefined ? closing : token.race(closing);
  }

  #beginClose(reportSlow: boolean): Promise<void> {
    if (this.#closePromise !== undefined) return this.#closePromise;
    this.#state = CLOSING;
    this.#closeStartedAt = Date.now();
    // Mark every descendant closing synchronously: entries anywhere below fail from now.
    const children = this.#children === undefined ? [] : [...this.#children];
    const childrenClosed = children.map((c) => c.#beginClose(false));
    const drained =
      this.#guards.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            this.#drained = resolve;
          });
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (reportSlow && this.#observer?.slowClose !== undefined) {
      timer = setTimeout(() => this.#reportSlow(), this.#slowCloseMs);
      timer.unref?.();
    }
    this.#closePromise = Promise.all([drained, ...childrenClosed]).then(() => {
      if (timer !== undefined) clearTimeout(timer);
      this.#state = CLOSED;
      this.#drained = undefined;
      if (this.#parent !== undefined) this.#parent.#children?.delete(this);
    });
    return this.#closePromise;
  }

  #reportSlow(): void {
    if (this.#state !== CLOSING) return;
    this.#slowReported = true;
    this.#observer?.slowClose?.({
      gate: this.name,
      elapsedMs: Date.now() - this.#closeStartedAt,
      holders: this.holders(),
    });
  }

  #reportLateRelease(guard: GateGuard): void {
    // The nearest gate, this one or an ancestor, whose slow close was reported.
    for (let g: Gate | undefined = this; g !== undefined; g = g.#parent) {
      if (g.#slowReported && g.#state === CLOSING) {
        g.#observer?.keptClosing?.({
          gate: g.name,
          holder: { gate: guard.gate.name, holder: guard.holder, since: guard.since },
          elapsedMs: Date.now() - g.#closeStartedAt,
        });
        return;
      }
    }
  }

  /**
   * Whether closing has begun (here or at an ancestor): no new guard or child.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const parent = new Gate();
   * const child = parent.child();
   * void parent.close();
   * console.log(child.isClosing); // true
   * ```
   */
  get isClosing(): boolean {
    return this.#state !== OPEN;
  }

  /**
   * Whether closing has completed: every guard of the subtree has been released.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const gate = new Gate();
   * await gate.close();
   * console.log(gate.isClosed); // true
   * ```
   */
  get isClosed(): boolean {
    return this.#state === CLOSED;
  }

  /**
   * Everyone inside this gate and its child gates, oldest first within each gate.
   *
   * @example
   * ```ts
   * import { Gate } from "tideline/lifecycle";
   * const gate = new Gate("t");
   * using _g = gate.child("walreceiver").enter("poller");
   * console.log(gate.holders()); // [{ gate: "t/walreceiver", holder: "poller", since: ... }]
   * ```
   */
  holders(): GateHolder[] {
    const out: GateHolder[] = [];
    const stack: Gate[] = [this];
    while (stack.length > 0) {
      const gate = stack.pop()!;
      for (const g of gate.#guards) out.push({ gate: gate.name, holder: g.holder, since: g.since });
      if (gate.#children !== undefined) {
        // Not push(...children): spreading arguments overflows the stack past ~100k.
        const children = [...gate.#children];
        for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!);
      }
    }
    return out;
  }
}

function checkThreshold(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0 || ms > 2 ** 31 - 1) {
    throw new RangeError(`slowCloseMs must be a number from 0 to 2147483647, got ${ms}`);
  }
  return ms;
}
