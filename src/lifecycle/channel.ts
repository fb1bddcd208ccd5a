/**
 * A bounded async channel with back-pressure.
 *
 * @module
 */
import type { CancellationToken } from "./cancellation_token.js";
import { Deque } from "./deque.js";
import { CancelledError, ChannelClosedError } from "./errors.js";

/** Options of a {@linkcode Channel}. */
export interface ChannelOptions<T> {
  /** How many items it holds before `send` waits. At least 1. */
  capacity: number;
  /**
   * Optionally, a second bound: the total weight (e.g. bytes) it holds before `send`
   * waits. An item heavier than this is still admitted into an empty channel.
   */
  maxWeight?: number;
  /** The weight of an item; required with `maxWeight`. */
  weigh?: (item: T) => number;
  /** A name for errors and diagnostics. */
  name?: string;
}

interface Sender<T> {
  readonly item: T;
  readonly weight: number;
  resolve(): void;
  reject(error: unknown): void;
}

interface Receiver<T> {
  resolve(item: T): void;
  reject(error: unknown): void;
}

/**
 * A FIFO queue between a producer and a consumer task, bounded by a count and
 * optionally by a total weight: `send` waits (token-aware) while it is full, which is
 * how a fast producer is slowed to the consumer's pace. `close()` stops sends; the
 * receiver drains what is left, then gets `ChannelClosedError` (or the end of
 * iteration).
 *
 * @example
 * ```ts
 * import { CancellationToken, Channel } from "tideline/lifecycle";
 * const token = new CancellationToken();
 * const ch = new Channel<Uint8Array>({ capacity: 16, maxWeight: 1 << 20, weigh: (b) => b.length });
 * await ch.send(new Uint8Array(10), token);
 * ch.close();
 * for await (const chunk of ch.iterate(token)) console.log(chunk.length); // 10
 * ```
 */
export class Channel<T> {
  /** The channel's name. */
  readonly name: string;
  /** The most items it holds. */
  readonly capacity: number;
  /** The most total weight it holds. */
  readonly maxWeight: number;
  readonly #weigh: ((item: T) => number) | undefined;
  readonly #items = new Deque<{ item: T; weight: number }>();
  readonly #senders = new Deque<Sender<T>>();
  readonly #receivers = new Deque<Receiver<T>>();
  #weight = 0;
  #closed = false;

  constructor(options: ChannelOptions<T>) {
    const { capacity, maxWeight = Number.POSITIVE_INFINITY, weigh, name = "channel" } = options;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Channel "${name}": capacity must be an integer >= 1, got ${capacity}`);
    }
    if (!(maxWeight > 0)) {
      throw new RangeError(`Channel "${name}": maxWeight must be > 0, got ${maxWeight}`);
    }
    if (maxWeight !== Number.POSITIVE_INFINITY && weigh === undefined) {
      throw new TypeError(`Channel "${name}": maxWeight needs a weigh function`);
    }
    this.name = name;
    this.capacity = capacity;
    this.maxWeight = maxWeight;
    this.#weigh = weigh;
  }

  /**
   * Items waiting to be received.
   *
   * @example
   * ```ts
   * import { Channel } from "tideline/lifecycle";
   * const ch = new Channel<number>({ capacity: 2 });
   * ch.trySend(1);
   * console.log(ch.size); // 1
   * ```
   */
  get size(): number {
    return this.#items.length;
  }

  /**
   * The total weight of the items waiting.
   *
   * @example
   * ```ts
   * import { Channel } from "tideline/lifecycle";
   * const ch = new Channel<string>({ capacity: 2, maxWeight: 100, weigh: (s) => s.length });
   * ch.trySend("abc");
   * console.log(ch.weight); // 3
   * ```
   */
  get weight(): number {
    return this.#weight;
  }

  /**
   * Whether `close()` has been called.
   *
   * @example
   * ```ts
   * import { Channel } from "tideline/lifecycle";
   * const ch = new Channel<number>({ capacity: 1 });
   * ch.close();
   * console.log(ch.isClosed); // true
   * ```
   */
  get isClosed(): boolean {
    return this.#closed;
  }

  #weightOf(item: T): number {
    if (this.#weigh === undefined) return 0;
    const w = this.#weigh(item);
    if (!Number.isFinite(w) || w < 0) {
      throw new RangeError(
        `Channel "${this.name}": weigh() must return a finite number >= 0, got ${w}`,
      );
    }
    return w;
  }

  #fits(weight: number): boolean {
    if (this.#items.length === 0) return true;
    return this.#items.length < this.capacity && this.#weight + weight <= this.maxWeight;
  }

  #admit(item: T, weight: number): void {
    const receiver = this.#receivers.shift();
    if (receiver !== undefined) {
      receiver.resolve(item);
      return;
    }
    this.#items.push({ item, weight });
    this.#weight += weight;
  }

  /**
   * Sends `item`, waiting while the channel is full. Rejects with `CancelledError` if
   * `token` is cancelled first (the item is then not sent) and with
   * `ChannelClosedError` if the channel is closed.
   *
   * @example
   * ```ts
   * import { CancellationToken, Channel } from "tideline/lifecycle";
   * const ch = new Channel<number>({ capacity: 1 });
   * await ch.send(1, new CancellationToken());
   * ```
   */
  send(item: T, token: CancellationToken): Promise<void> {
    if (this.#closed) return Promise.reject(new ChannelClosedError(this.name));
    if (token.isCancelled) return Promise.reject(new CancelledError(token.reason));
    const weight = this.#weightOf(item);
    if (this.#senders.length === 0 && this.#fits(weight)) {
      this.#admit(item, weight);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const registration = token.onCancel((reason) => {
        this.#senders.remove(sender);
        reject(new CancelledError(reason));
        // It may have been the one holding back later senders whose items fit.
        this.#admitSenders();
      });
      const sender: Sender<T> = {
        item,
        weight,
        resolve: () => {
          registration[Symbol.dispose]();
          resolve();
        },
        reject: (error) => {
          registration[Symbol.dispose]();
          reject(error);
        },
      };
      this.#senders.push(sender);
    });
  }

  /**
   * Sends `item` if there is room now; returns whether it did. Throws
   * `ChannelClosedError` on a closed channel.
   *
   * @example
   * ```ts
   * import { Channel } from "tideline/lifecycle";
   * const ch = new Channel<number>({ capacity: 1 });
   * console.log(ch.trySend(1), ch.trySend(2)); // true false
   * ```
   */
  trySend(item: T): boolean {
    if (this.#closed) throw new ChannelClosedError(this.name);
    const weight = this.#weightOf(item);
    if (this.#senders.length > 0 || !this.#fits(weight)) return false;
    this.#admit(item, weight);
    return true;
  }

  #take(): T {
    const entry = this.#items.shift()!;
    this.#weight -= entry.weight;
    if (this.#items.length === 0) this.#weight = 0; // no drift from float weights
    this.#admitSenders();
    return entry.item;
  }

  /** Admits waiting senders in order while they fit. */
  #admitSenders(): void {
    for (
      let s = this.#senders.peek();
      s !== undefined && this.#fits(s.weight);
      s = this.#senders.peek()
    ) {
      this.#senders.shift();
      this.#items.push({ item: s.item, weight: s.weight });
      this.#weight += s.weight;
      s.resolve();
    }
  }

  /**
   * Receives the next item, waiting while the channel is empty. Rejects with
   * `CancelledError` if `token` is cancelled first (no item is lost) and with
   * `ChannelClosedError` once the channel is closed and drained.
   *
   * @example
   * ```ts
   * import { CancellationToken, Channel } from "tideline/lifecycle";
   * const token = new CancellationToken();
   * const ch = new Channel<number>({ capacity: 1 });
   * await ch.send(7, token);
   * console.log(await ch.recv(token)); // 7
   * ```
   */
  recv(token: CancellationToken): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#take());
    if (this.#closed) return Promise.reject(new ChannelClosedError(this.name));
    if (token.isCancelled) return Promise.reject(new CancelledError(token.reason));
    return new Promise<T>((resolve, reject) => {
      const registration = token.onCancel((reason) => {
        this.#receivers.remove(receiver);
        reject(new CancelledError(reason));
      });
      const receiver: Receiver<T> = {
        resolve: (item) => {
          registration[Symbol.dispose]();
          resolve(item);
        },
        reject: (error) => {
          registration[Symbol.dispose]();
          reject(error);
        },
      };
      this.#receivers.push(receiver);
    });
  }

  /**
   * Receives an item if one is waiting now.
   *
   * @example
   * ```ts
   * import { Channel } from "tideline/lifecycle";
   * const ch = new Channel<number>({ capacity: 1 });
   * console.log(ch.tryRecv()); // undefined
   * ```
   */
  tryRecv(): T | undefined {
    return this.#items.length > 0 ? this.#take() : undefined;
  }

  /**
   * Closes the channel: sends fail from now on (waiting senders get
   * `ChannelClosedError`, their items are not delivered); receivers get what is
   * already queued, then `ChannelClosedError`. Idempotent.
   *
   * @example
   * ```ts
   * import { Channel } from "tideline/lifecycle";
   * const ch = new Channel<number>({ capacity: 1 });
   * ch.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let s = this.#senders.shift(); s !== undefined; s = this.#senders.shift()) {
      s.reject(new ChannelClosedError(this.name));
    }
    for (let r = this.#receivers.shift(); r !== undefined; r = this.#receivers.shift()) {
      r.reject(new ChannelClosedError(this.name));
    }
  }

  /**
   * Iterates over received items until the channel is closed and drained; a
   * cancelled `token` ends the loop with `CancelledError`.
   *
   * @example
   * ```ts
   * import { CancellationToken, Channel } from "tideline/lifecycle";
   * const token = new CancellationToken();
   * const ch = new Channel<number>({ capacity: 4 });
   * ch.trySend(1);
   * ch.close();
   * for await (const n of ch.iterate(token)) console.log(n); // 1
   * ```
   */
  async *iterate(token: CancellationToken): AsyncGenerator<T, void, undefined> {
    while (true) {
      try {
        yield await this.recv(token);
      } catch (error) {
        if (error instanceof ChannelClosedError) return;
        throw error;
      }
    }
  }
}
