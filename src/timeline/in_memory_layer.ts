/**
 * The open layer that takes WAL as it streams in, and the frozen layers waiting to be
 * written out.
 *
 * @module
 */
import type { Lsn, WalRecord } from "../wal/index.js";
import {
  BLOCK_APPLY_IMAGE,
  BLOCK_HAS_IMAGE,
  BLOCK_WILL_INIT,
  BlockTable,
  RecordTable,
} from "./layer_tables.js";
import { walBuffers } from "./wal_buffers.js";

/**
 * WAL bytes `[start, end)` exactly as streamed (page headers included), held in memory,
 * with the index of the complete records among them. An open layer grows with
 * {@linkcode append}; {@linkcode freezeAt} cuts it at a record end into an immutable
 * frozen layer and a new open layer with the rest.
 *
 * @example
 * ```ts
 * import { InMemoryLayer } from "tideline/timeline";
 * const layer = new InMemoryLayer(0x1000000n);
 * layer.append(Buffer.alloc(8192));
 * layer.end; // 0x1002000n
 * ```
 */
export class InMemoryLayer {
  /** The LSN of its first byte. */
  readonly start: Lsn;
  #chunks: Buffer[] = [];
  /** Offset (from `start`) of each chunk's first byte. */
  #offsets: number[] = [];
  #size = 0;
  #frozen = false;
  #pins = 0;
  #disposed = false;
  #released = false;
  /** The complete records in it, in LSN order. */
  records: RecordTable = new RecordTable();
  /** Their block references (unsorted while open). */
  blocks: BlockTable = new BlockTable();

  constructor(start: Lsn) {
    this.start = start;
  }

  /** The LSN just past its last byte. */
  get end(): Lsn {
    return this.start + BigInt(this.#size);
  }

  /** How many WAL bytes it holds. */
  get size(): number {
    return this.#size;
  }

  /** Whether it has been frozen (no more appends). */
  get frozen(): boolean {
    return this.#frozen;
  }

  /**
   * Appends WAL bytes; the layer keeps `bytes` (the caller must not reuse its memory). Bytes
   * from {@linkcode walBuffers} are retained, and released by {@linkcode dispose}.
   */
  append(bytes: Buffer): void {
    if (this.#frozen)
      throw new TypeError(`Layer starting at ${this.start} is frozen: cannot append`);
    if (bytes.length === 0) return;
    walBuffers.retain(bytes);
    this.#adopt(bytes);
  }

  /** Appends a chunk whose pool reference is handed over with it (no retain). */
  #adopt(bytes: Buffer): void {
    this.#chunks.push(bytes);
    this.#offsets.push(this.#size);
    this.#size += bytes.length;
  }

  /** Indexes a decoded record that lies in this layer. */
  addRecord(rec: WalRecord): void {
    const row = this.records.pushParts(
      rec.lsnHi,
      rec.lsnLo,
      rec.endHi,
      rec.endLo,
      rec.xid,
      rec.totLen,
      rec.rmid,
      rec.info,
    );
    for (const b of rec.blocks) {
      const flags =
        (b.hasImage ? BLOCK_HAS_IMAGE : 0) |
        (b.applyImage ? BLOCK_APPLY_IMAGE : 0) |
        (b.willInit ? BLOCK_WILL_INIT : 0);
      this.blocks.pushRaw(b.spc, b.db, b.rel, b.fork, b.blk, flags, row);
    }
  }

  /**
   * Freezes `[start, at)` in place and returns a new open layer with the bytes from `at`
   * on (the tail of a record still streaming) and no records. `at` must lie within the
   * layer and every indexed record must end at or before it.
   */
  freezeAt(at: Lsn): InMemoryLayer {
    const rest = new InMemoryLayer(at);
    // The next layer will most likely hold about as many records: room for them up front
    // spares its tables the copies of growing (and their zero-filled new memory) as it fills.
    rest.records.reserve(Math.ceil(this.records.length * 1.125) + 64);
    rest.blocks.reserve(Math.ceil(this.blocks.length * 1.125) + 64);
    // The chunks cut off come with their pool references: the new layer takes them over.
    for (const chunk of this.#cut(at)) rest.#adopt(chunk);
    this.#frozen = true;
    // The block index is sorted when the layer file is written, in the flush task: not here,
    // on the ingest path, where it would hold up the waiters this piece of WAL just woke.
    return rest;
  }

  /**
   * Keeps its memory valid across awaits: a reader pins the layer before reading it in
   * pieces, and unpins it after. A {@linkcode dispose} meanwhile waits for the last unpin.
   */
  pin(): void {
    if (this.#released) throw new TypeError(`Layer starting at ${this.start} was disposed`);
    this.#pins++;
  }

  /** Ends a {@linkcode pin}. */
  unpin(): void {
    if (this.#pins <= 0) throw new TypeError(`Layer starting at ${this.start} is not pinned`);
    if (--this.#pins === 0 && this.#disposed) this.#release();
  }

  /**
   * Gives its memory back to the pool ({@linkcode walBuffers}) once no reader has it pinned:
   * for a frozen layer whose file has been written. It must not be read afterwards.
   */
  dispose(): void {
    this.#disposed = true;
    if (this.#pins === 0) this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const c of this.#chunks) walBuffers.release(c);
    this.#chunks = [];
    this.#offsets = [];
  }

  /** Drops the bytes from `at` on (an undecodable tail). Records must all end at or before `at`. */
  truncate(at: Lsn): void {
    if (this.#frozen)
      throw new TypeError(`Layer starting at ${this.start} is frozen: cannot truncate`);
    for (const chunk of this.#cut(at)) walBuffers.release(chunk);
  }

  /**
   * Shortens the layer to `[start, at)`; returns the chunks of the bytes cut off, each
   * holding one pool reference that passes to the caller (adopt or release it).
   */
  #cut(at: Lsn): Buffer[] {
    if (at < this.start || at > this.end) {
      throw new RangeError(`Cannot cut layer [${this.start}, ${this.end}) at ${at}`);
    }
    const cut = Number(at - this.start);
    const tail: Buffer[] = [];
    let i = this.#chunks.length;
    while (i > 0 && this.#offsets[i - 1]! >= cut) i--;
    // Chunk i-1 contains the cut (or ends exactly at it); chunks from i on lie after it.
    if (i > 0) {
      const c = this.#chunks[i - 1]!;
      const within = cut - this.#offsets[i - 1]!;
      if (within < c.length) {
        // Split: this layer keeps its reference for the part before `at`; the part after
        // gets one of its own.
        const after = c.subarray(within);
        walBuffers.retain(after);
        tail.push(after);
        this.#chunks[i - 1] = c.subarray(0, within);
      }
    }
    // Whole chunks after `at` leave with their references (never dropped in between, or
    // their slab could be handed out again before the caller takes them).
    for (let j = i; j < this.#chunks.length; j++) tail.push(this.#chunks[j]!);
    this.#chunks.length = i;
    this.#offsets.length = i;
    this.#size = cut;
    return tail;
  }

  /** Copies bytes `[from, to)` (LSNs within the layer) into `target` at `targetOffset`. */
  copyTo(from: Lsn, to: Lsn, target: Buffer, targetOffset = 0): void {
    if (this.#released) throw new TypeError(`Layer starting at ${this.start} was disposed`);
    if (from < this.start || to > this.end || to < from) {
      throw new RangeError(`Range [${from}, ${to}) is outside layer [${this.start}, ${this.end})`);
    }
    let pos = Number(from - this.start);
    const stop = Number(to - this.start);
    let out = targetOffset;
    let i = this.#chunkAt(pos);
    while (pos < stop) {
      const c = this.#chunks[i]!;
      const within = pos - this.#offsets[i]!;
      const n = Math.min(c.length - within, stop - pos);
      c.copy(target, out, within, within + n);
      out += n;
      pos += n;
      i++;
    }
  }

  /** Bytes `[from, to)` as a new buffer. */
  read(from: Lsn, to: Lsn): Buffer {
    const out = Buffer.allocUnsafe(Number(to - from));
    this.copyTo(from, to, out);
    return out;
  }

  #chunkAt(pos: number): number {
    let lo = 0;
    let hi = this.#chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#offsets[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
