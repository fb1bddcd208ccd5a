/**
 * Pooled memory for streamed WAL: the WAL receiver copies what it reads from the socket
 * (one reused read buffer) into 1 MiB slabs; the open layer keeps those views; once a
 * layer's file is written it gives them back, and a slab nothing refers to any more is
 * reused. Memory stays bounded by what layers hold, and streaming allocates nothing new:
 * a fresh 64 KiB buffer per socket read cost page faults and garbage collection (~0.3 s of
 * CPU per 600 MB, see BENCHMARKS.md).
 *
 * @module
 */

/** Bytes per slab. */
export const WAL_SLAB_SIZE = 1 << 20;

interface Slab {
  readonly buf: Buffer;
  /** Views handed out and not released yet. */
  refs: number;
  /** No more views will be cut from it (the pool moved on to another slab). */
  sealed: boolean;
}

/**
 * Reference-counted slabs of WAL memory. {@linkcode WalBufferPool.copy} returns a view that
 * holds one reference; {@linkcode WalBufferPool.retain} and {@linkcode WalBufferPool.release}
 * count others (views of any other memory are ignored by both). A slab is reused only when
 * it is sealed and its count is zero; a view that is dropped without a release only keeps
 * its slab from being reused (the garbage collector takes it), never the reverse.
 *
 * @example
 * ```ts
 * import { WalBufferPool } from "tideline/timeline";
 * const pool = new WalBufferPool();
 * const view = pool.copy(Buffer.from("WAL bytes"));
 * pool.retain(view); // a second holder
 * pool.release(view);
 * pool.release(view); // its slab may now be reused
 * ```
 */
export class WalBufferPool {
  readonly #slabs = new WeakMap<ArrayBufferLike, Slab>();
  /** Every slab this pool made: a view of one that is not in `#slabs` is of freed memory. */
  readonly #made = new WeakSet<ArrayBufferLike>();
  readonly #poison: boolean;
  readonly #free: Buffer[] = [];
  readonly #maxFree: number;
  #cur: Slab | undefined;
  #used = 0;
  #reused = 0;

  /**
   * `maxFreeSlabs`: free slabs kept for reuse at most (default 96, 96 MiB). `poison`: fill a
   * slab with 0xEE as it is freed, so that a read of freed memory shows (the tests run so,
   * through `TIDELINE_POOL_POISON=1`).
   */
  constructor(maxFreeSlabs = 96, poison = false) {
    if (!Number.isSafeInteger(maxFreeSlabs) || maxFreeSlabs < 0)
      throw new RangeError(`maxFreeSlabs must be an integer >= 0, got ${maxFreeSlabs}`);
    this.#maxFree = maxFreeSlabs;
    this.#poison = poison;
  }

  /**
   * Copies `src` into pooled memory and returns the copy, which holds one reference. Pieces
   * above a quarter slab get memory of their own (not pooled).
   */
  copy(src: Uint8Array): Buffer {
    const n = src.length;
    if (n > WAL_SLAB_SIZE / 4) {
      const own = Buffer.allocUnsafeSlow(n);
      own.set(src);
      return own;
    }
    let cur = this.#cur;
    if (cur === undefined || this.#used + n > WAL_SLAB_SIZE) {
      if (cur !== undefined) {
        cur.sealed = true;
        this.#maybeFree(cur);
      }
      const reused = this.#free.pop();
      if (reused !== undefined) this.#reused++;
      const buf = reused ?? Buffer.allocUnsafeSlow(WAL_SLAB_SIZE);
      this.#made.add(buf.buffer);
      cur = { buf, refs: 0, sealed: false };
      this.#slabs.set(buf.buffer, cur);
      this.#cur = cur;
      this.#used = 0;
    }
    const view = cur.buf.subarray(this.#used, this.#used + n);
    view.set(src);
    this.#used += n;
    cur.refs++;
    return view;
  }

  /** Counts one more holder of `view` (a no-op for memory not from this pool). */
  retain(view: Uint8Array): void {
    const s = this.#slabs.get(view.buffer);
    if (s !== undefined) s.refs++;
    else this.#checkNotFreed(view, "retained");
  }

  /** Ends one holder of `view`; its slab is reused once none is left (a no-op for other memory). */
  release(view: Uint8Array): void {
    const s = this.#slabs.get(view.buffer);
    if (s === undefined) {
      this.#checkNotFreed(view, "released");
      return;
    }
    if (s.refs <= 0) throw new TypeError("WalBufferPool: released more often than retained");
    if (--s.refs === 0) this.#maybeFree(s);
  }

  /** Free slabs waiting to be reused, and how many times one was. */
  get stats(): { free: number; reused: number } {
    return { free: this.#free.length, reused: this.#reused };
  }

  /** A view of a slab that was freed: whoever holds it lost count (a bug, never ignored). */
  #checkNotFreed(view: Uint8Array, what: string): void {
    if (this.#made.has(view.buffer)) {
      throw new TypeError(`WalBufferPool: a view of a freed slab was ${what}`);
    }
  }

  #maybeFree(s: Slab): void {
    if (!s.sealed || s.refs !== 0) return;
    this.#slabs.delete(s.buf.buffer);
    if (this.#poison) s.buf.fill(0xee);
    if (this.#free.length < this.#maxFree) this.#free.push(s.buf);
  }
}

/**
 * The process's pool: the WAL receiver copies into it, in-memory layers retain and release.
 *
 * @example
 * ```ts
 * import { walBuffers } from "tideline/timeline";
 * walBuffers.stats; // { free: 0, reused: 0 }
 * ```
 */
export const walBuffers = new WalBufferPool(96, process.env.TIDELINE_POOL_POISON === "1");
