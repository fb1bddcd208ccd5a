/**
 * Reading segment files for `tideline waldump --stats` while decoding: the next chunks are
 * read by libuv's thread pool while the calling thread decodes the one before, so the copy
 * out of the page cache (a fifth of a sequential run's time) leaves the decoding thread; with
 * the native addon the pool also computes the CRCs of each chunk's records
 * ({@link readWithRecordCrcs}), and the decoder only compares them.
 *
 * @module
 */
import { closeSync, openSync, readSync } from "node:fs";
import { type RecordCrcList, readWithRecordCrcs } from "../../../wal/crc_list.js";
import { DEFAULT_PAGE_SIZE } from "../../../wal/segment.js";

/** A segment file to read. */
export interface ChunkFile {
  readonly path: string;
  readonly size: number;
}

/** One chunk read: `bytes` holds what was read (fewer than asked at a file's early end). */
export interface Chunk {
  /** Index in the files of the file it comes from. */
  readonly file: number;
  /** Its offset in that file. */
  readonly pos: number;
  /** The bytes read (a view of `buffer`). */
  readonly bytes: Buffer;
  /** The whole buffer: give it back with {@link ChunkReader.recycle} once nothing uses it. */
  readonly buffer: Buffer;
  /** True when the file ended before the bytes asked for: the rest of it is skipped. */
  readonly short: boolean;
  /** The CRCs of its records, when computed ahead: pass them to the decoder with `bytes`. */
  readonly crcs: RecordCrcList | undefined;
}

interface Read {
  readonly bytes: Buffer;
  readonly crcs: RecordCrcList | undefined;
}

interface Pending {
  readonly file: number;
  readonly pos: number;
  readonly want: number;
  readonly buffer: Buffer;
  readonly done: Promise<Read>;
}

/**
 * Reads `files` (WAL segments) in order in chunks of `chunkSize` bytes (a multiple of the page
 * size), from byte `offset` (a page start) of file `first`, keeping `ahead` chunks read or
 * being read beyond the one handed out. Files are opened when their first
 * read starts and closed once read. {@link ChunkReader.close} must be awaited in every case:
 * it waits for the reads still in flight and closes what is open.
 *
 * @example
 * ```ts
 * const reader = new ChunkReader(files, 0, 0, 1 << 20, 2);
 * try {
 *   for (let c = await reader.next(); c !== undefined; c = await reader.next()) {
 *     dec.push(c.bytes, c.crcs);
 *     drain();
 *     if (dec.bufferedBytes === 0) reader.recycle(c);
 *   }
 * } finally {
 *   await reader.close();
 * }
 * ```
 */
export class ChunkReader {
  readonly #files: readonly ChunkFile[];
  readonly #chunkSize: number;
  readonly #ahead: number;
  readonly #queue: Pending[] = [];
  readonly #free: Buffer[];
  readonly #freeLists: RecordCrcList[] = [];
  readonly #fds = new Map<number, number>();
  #nextFile: number;
  #nextPos: number;
  #skipFile = -1;
  #reading = 0;
  /** The settle handlers of the reads started and not settled yet: close() waits for them all. */
  readonly #started = new Set<Promise<void>>();
  #failed = false;
  #error: unknown;
  #closed = false;

  /**
   * @param ahead chunks read (or being read) beyond the one handed out. 0: none, each chunk is
   *   read when asked, on the calling thread and without CRCs computed ahead (for when every
   *   core decodes: reads on the thread pool would only take their time).
   * @param free buffers of `chunkSize` bytes to read into first (more are made as needed).
   * @throws RangeError when `chunkSize` is not a positive integer or `ahead` a non-negative one.
   */
  constructor(
    files: readonly ChunkFile[],
    first: number,
    offset: number,
    chunkSize: number,
    ahead: number,
    free: Buffer[] = [],
  ) {
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
      throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
    }
    if (!Number.isSafeInteger(ahead) || ahead < 0) {
      throw new RangeError(`ahead must be a non-negative integer, got ${ahead}`);
    }
    this.#files = files;
    this.#chunkSize = chunkSize;
    this.#ahead = ahead;
    this.#free = free;
    this.#nextFile = first;
    this.#nextPos = offset;
  }

  /**
   * The next chunk, or `undefined` when every file has been read. Rejects with the error of
   * the read (or open) of that chunk, and with it again on every later call: nothing after a
   * failed chunk is handed out. The reader must still be closed.
   *
   * @example
   * ```ts
   * const c = await reader.next();
   * ```
   */
  async next(): Promise<Chunk | undefined> {
    if (this.#error !== undefined) throw this.#error;
    for (;;) {
      this.#fill(1);
      const p = this.#queue.shift();
      if (p === undefined) return undefined;
      // Reads of earlier files are all done (they were handed out in order): close them.
      for (const [f, fd] of this.#fds) {
        if (f < p.file) {
          this.#fds.delete(f);
          closeSync(fd);
        }
      }
      // Keep reading while the caller decodes this chunk.
      this.#fill();
      let read: Read;
      try {
        read = await p.done;
      } catch (error) {
        this.#error = error;
        this.#failed = true;
        throw error;
      }
      const { bytes, crcs } = read;
      const n = bytes.length;
      if (p.file === this.#skipFile) {
        this.#free.push(p.buffer);
        if (crcs !== undefined) this.#freeLists.push(crcs);
        continue;
      }
      const short = n < p.want;
      if (short) this.#skipFile = p.file;
      return { file: p.file, pos: p.pos, bytes, buffer: p.buffer, short, crcs };
    }
  }

  /**
   * Gives a chunk's buffer (and CRC list) back for a later read. Only when nothing refers to
   * its bytes any more (a decoder keeps what it has not consumed).
   *
   * @example
   * ```ts
   * if (dec.bufferedBytes === 0) reader.recycle(chunk);
   * ```
   */
  recycle(chunk: Chunk): void {
    if (chunk.buffer.length === this.#chunkSize) this.#free.push(chunk.buffer);
    if (chunk.crcs !== undefined) this.#freeLists.push(chunk.crcs);
  }

  /**
   * Waits for every read in flight (the buffers of those not handed out go back to the free
   * list), closes the files still open (all of them, then throws the first error of a close
   * that failed), and reads no more.
   *
   * @example
   * ```ts
   * await reader.close();
   * ```
   */
  async close(): Promise<void> {
    this.#closed = true;
    const pending = this.#queue.splice(0);
    // Also a read already taken by a next() that has not returned: its file must stay open.
    await Promise.allSettled([...this.#started]);
    for (const p of pending) this.#free.push(p.buffer);
    this.#freeLists.length = 0;
    let failure: unknown;
    for (const fd of this.#fds.values()) {
      try {
        closeSync(fd);
      } catch (error) {
        failure ??= error;
      }
    }
    this.#fds.clear();
    if (failure !== undefined) throw failure;
  }

  /** Reads `want` bytes at `pos` into `buffer`, with their records' CRCs where possible. */
  async #read(fd: number, buffer: Buffer, want: number, pos: number): Promise<Read> {
    if (this.#ahead === 0) {
      const n = readSync(fd, buffer, 0, want, pos);
      return { bytes: n === buffer.length ? buffer : buffer.subarray(0, n), crcs: undefined };
    }
    const { bytes, crcs } = await readWithRecordCrcs(
      fd,
      pos,
      buffer,
      want,
      DEFAULT_PAGE_SIZE,
      this.#freeLists.pop(),
    );
    return { bytes, crcs };
  }

  /**
   * Starts the next read, unless one is in flight or `count` chunks (`ahead` beyond the one
   * handed out, or the one next() waits for) are read or being read, or the files have ended.
   * Reads run one at a time, each started when the one before finishes: on a machine with
   * few cores, several at once would take the decoding thread's core (with two cores, one at
   * a time measured 5% faster than libuv's four).
   */
  #fill(count = this.#ahead): void {
    while (!this.#closed && !this.#failed && this.#reading === 0 && this.#queue.length < count) {
      const f = this.#nextFile;
      const file = this.#files[f];
      if (file === undefined) return;
      if (this.#nextPos >= file.size || f === this.#skipFile) {
        this.#nextFile = f + 1;
        this.#nextPos = 0;
        continue;
      }
      const want = Math.min(this.#chunkSize, file.size - this.#nextPos);
      const spare = this.#free.pop();
      const buffer =
        spare !== undefined && spare.length === this.#chunkSize
          ? spare
          : Buffer.allocUnsafeSlow(this.#chunkSize);
      const pos = this.#nextPos;
      let done: Promise<Read>;
      let fd = this.#fds.get(f);
      try {
        if (fd === undefined) {
          fd = openSync(file.path, "r");
          this.#fds.set(f, fd);
        }
        done = this.#read(fd, buffer, want, pos);
      } catch (error) {
        // Reported in order, by next() for this chunk; nothing is read after it.
        done = Promise.reject(error);
        this.#failed = true;
      }
      this.#reading++;
      // The outcome is handled where `done` is awaited (next() or close()); this handler also
      // keeps a read that fails before then from counting as an unhandled rejection. close()
      // awaits the handler itself (it never rejects), so that nothing runs after it.
      const settled = (): void => {
        this.#reading--;
        this.#started.delete(handled);
        this.#fill();
      };
      const handled = done.then(settled, settled);
      this.#started.add(handled);
      this.#queue.push({ file: f, pos, want, buffer, done });
      this.#nextPos = pos + this.#chunkSize;
    }
  }
}
