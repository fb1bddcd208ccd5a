/**
 * The per-layer record index and block index, kept as columns of typed arrays: ingest
 * appends to them without allocating an object per record, and a layer file stores
 * them column by column, so loading one is a few copies.
 *
 * @module
 */
import { endianness } from "node:os";
import { type Lsn, lsnFromParts } from "../wal/index.js";

/** Whether a bigint column can be written as two 32-bit words (low word first). */
const LITTLE_ENDIAN = endianness() === "LE";

function grow<T extends { length: number; set(a: ArrayLike<number | bigint>): void }>(
  arr: T,
  make: (n: number) => T,
  need: number,
): T {
  if (need <= arr.length) return arr;
  const next = make(Math.max(need, arr.length * 2, 64));
  next.set(arr as unknown as ArrayLike<number | bigint>);
  return next;
}

type Column = BigUint64Array<ArrayBuffer> | Uint32Array<ArrayBuffer> | Uint8Array<ArrayBuffer>;
type ColumnType = typeof BigUint64Array | typeof Uint32Array | typeof Uint8Array;

/** Writes the first `n` values of each column, one column after another. */
function serializeColumns(columns: readonly Column[], n: number): Buffer {
  return Buffer.concat(columnBytes(columns, n));
}

/** Byte views of the first `n` values of each column, in order: the serialized table. */
function columnBytes(columns: readonly Column[], n: number): Buffer[] {
  return columns.map((col) => Buffer.from(col.buffer, col.byteOffset, n * col.BYTES_PER_ELEMENT));
}

/** `col` itself when it holds exactly `n` values, else a copy of its first `n`. */
function exact<T extends Column>(col: T, n: number): T {
  return (col.length === n ? col : col.slice(0, n)) as T;
}

/** Reads what {@linkcode serializeColumns} wrote: `n` values of each type, in order (copies, so aligned). */
function deserializeColumns(buf: Buffer, n: number, types: readonly ColumnType[]): Column[] {
  let o = 0;
  return types.map((Type) => {
    const bytes = n * Type.BYTES_PER_ELEMENT;
    const copy = new Uint8Array(bytes);
    copy.set(buf.subarray(o, o + bytes));
    o += bytes;
    return new Type(copy.buffer);
  });
}

/*
 * The block index's radix sort, in small functions of one loop each, one per element type: V8
 * optimizes a long loop while it runs, and code after it in the same function, which has not
 * run yet, then has no type feedback and throws the optimized code away when reached. In one
 * function per step, each loop is compiled once and stays (sortedCopy was deoptimized ~80
 * times a 600 MB ingest, ~50 ms of compiling).
 */

/** One stable counting pass of an LSD radix sort: the `n` row numbers in `from`, ordered by
 * the 8-bit digit `(column[row] >>> shift) & 0xff`, into `to`. */
function radixPass32(
  column: Uint32Array,
  shift: number,
  from: Uint32Array,
  to: Uint32Array,
  counts: Uint32Array,
  n: number,
): void {
  countDigits32(column, shift, from, counts, n);
  prefixSums(counts);
  scatter32(column, shift, from, to, counts, n);
}

/** {@linkcode radixPass32} for a byte column. */
function radixPass8(
  column: Uint8Array,
  shift: number,
  from: Uint32Array,
  to: Uint32Array,
  counts: Uint32Array,
  n: number,
): void {
  countDigits8(column, shift, from, counts, n);
  prefixSums(counts);
  scatter8(column, shift, from, to, counts, n);
}

function countDigits32(
  column: Uint32Array,
  shift: number,
  from: Uint32Array,
  counts: Uint32Array,
  n: number,
): void {
  counts.fill(0);
  for (let k = 0; k < n; k++) counts[(column[from[k]!]! >>> shift) & 0xff]!++;
}

function countDigits8(
  column: Uint8Array,
  shift: number,
  from: Uint32Array,
  counts: Uint32Array,
  n: number,
): void {
  counts.fill(0);
  for (let k = 0; k < n; k++) counts[(column[from[k]!]! >>> shift) & 0xff]!++;
}

/** Counts into the index each digit's rows start at. */
function prefixSums(counts: Uint32Array): void {
  let sum = 0;
  for (let d = 0; d < counts.length; d++) {
    const c = counts[d]!;
    counts[d] = sum;
    sum += c;
  }
}

function scatter32(
  column: Uint32Array,
  shift: number,
  from: Uint32Array,
  to: Uint32Array,
  counts: Uint32Array,
  n: number,
): void {
  for (let k = 0; k < n; k++) {
    const row = from[k]!;
    to[counts[(column[row]! >>> shift) & 0xff]!++] = row;
  }
}

function scatter8(
  column: Uint8Array,
  shift: number,
  from: Uint32Array,
  to: Uint32Array,
  counts: Uint32Array,
  n: number,
): void {
  for (let k = 0; k < n; k++) {
    const row = from[k]!;
    to[counts[(column[row]! >>> shift) & 0xff]!++] = row;
  }
}

/** The bits in which the rows `order[0, n)` of `column` differ from the first. */
function differing32(column: Uint32Array, order: Uint32Array, n: number): number {
  const first = column[order[0]!]!;
  let differ = 0;
  for (let k = 1; k < n; k++) differ |= column[order[k]!]! ^ first;
  return differ;
}

function differing8(column: Uint8Array, order: Uint32Array, n: number): number {
  const first = column[order[0]!]!;
  let differ = 0;
  for (let k = 1; k < n; k++) differ |= column[order[k]!]! ^ first;
  return differ;
}

/** The rows (in `order`, from 0) of the records in `[from, to)`; returns how many. */
function selectRows(
  record: Uint32Array,
  length: number,
  from: number,
  to: number,
  order: Uint32Array,
): number {
  let n = 0;
  for (let i = 0; i < length; i++) {
    const r = record[i]!;
    if (r >= from && r < to) order[n++] = i;
  }
  return n;
}

/** `column`'s values at rows `order[0, n)`, less `minus`, as a new column. */
function gather32(
  column: Uint32Array,
  order: Uint32Array,
  n: number,
  minus = 0,
): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(n);
  for (let k = 0; k < n; k++) out[k] = column[order[k]!]! - minus;
  return out;
}

function gather8(column: Uint8Array, order: Uint32Array, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let k = 0; k < n; k++) out[k] = column[order[k]!]!;
  return out;
}

/**
 * One row per record: where it starts and ends, its transaction, length, resource
 * manager and info byte.
 *
 * @example
 * ```ts
 * import { RecordTable } from "tideline/timeline";
 * const t = new RecordTable();
 * t.push(0x1000028n, 0x10000a0n, 0, 114, 0, 0x00);
 * t.length; // 1
 * ```
 */
export class RecordTable {
  lsn = new BigUint64Array(0);
  end = new BigUint64Array(0);
  xid = new Uint32Array(0);
  totLen = new Uint32Array(0);
  rmid = new Uint8Array(0);
  info = new Uint8Array(0);
  length = 0;

  /** Appends a record. */
  push(lsn: Lsn, end: Lsn, xid: number, totLen: number, rmid: number, info: number): number {
    const i = this.length;
    if (i === this.lsn.length) this.reserve(i + 1);
    this.lsn[i] = lsn;
    this.end[i] = end;
    this.xid[i] = xid;
    this.totLen[i] = totLen;
    this.rmid[i] = rmid;
    this.info[i] = info;
    this.length = i + 1;
    return i;
  }

  /** 32-bit views of `lsn` and `end` (for {@linkcode pushParts}). */
  #lsnWords = new Uint32Array(0);
  #endWords = new Uint32Array(0);
  /** The columns those views were made of. */
  #wordsOf: BigUint64Array | undefined;
  #endWordsOf: BigUint64Array | undefined;

  /**
   * Appends a record given its LSN and end as 32-bit halves (what the decoder keeps):
   * on a little-endian machine no bigint is made at all.
   */
  pushParts(
    lsnHi: number,
    lsnLo: number,
    endHi: number,
    endLo: number,
    xid: number,
    totLen: number,
    rmid: number,
    info: number,
  ): number {
    const i = this.length;
    if (i === this.lsn.length) this.reserve(i + 1);
    if (LITTLE_ENDIAN) {
      let lw = this.#lsnWords;
      let ew = this.#endWords;
      // Compared by column, not by `.buffer`: that getter is a slow runtime call.
      if (this.#wordsOf !== this.lsn || this.#endWordsOf !== this.end) {
        this.#wordsOf = this.lsn;
        this.#endWordsOf = this.end;
        lw = this.#lsnWords = new Uint32Array(
          this.lsn.buffer,
          this.lsn.byteOffset,
          this.lsn.length * 2,
        );
        ew = this.#endWords = new Uint32Array(
          this.end.buffer,
          this.end.byteOffset,
          this.end.length * 2,
        );
      }
      lw[2 * i] = lsnLo;
      lw[2 * i + 1] = lsnHi;
      ew[2 * i] = endLo;
      ew[2 * i + 1] = endHi;
    } else {
      this.lsn[i] = lsnFromParts(lsnHi, lsnLo);
      this.end[i] = lsnFromParts(endHi, endLo);
    }
    this.xid[i] = xid;
    this.totLen[i] = totLen;
    this.rmid[i] = rmid;
    this.info[i] = info;
    this.length = i + 1;
    return i;
  }

  /**
   * Makes room for `n` rows, so that pushing that many does not grow the columns (each
   * growth copies them).
   *
   * @example
   * ```ts
   * new RecordTable().reserve(100_000);
   * ```
   */
  reserve(n: number): void {
    this.lsn = grow(this.lsn, (k) => new BigUint64Array(k), n);
    this.end = grow(this.end, (k) => new BigUint64Array(k), n);
    this.xid = grow(this.xid, (k) => new Uint32Array(k), n);
    this.totLen = grow(this.totLen, (k) => new Uint32Array(k), n);
    this.rmid = grow(this.rmid, (k) => new Uint8Array(k), n);
    this.info = grow(this.info, (k) => new Uint8Array(k), n);
  }

  /** The index of the first record starting at or after `lsn` (`length` if none). */
  lowerBound(lsn: Lsn): number {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.lsn[mid]! < lsn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Rows `[from, to)` as a new table (for splitting a layer). */
  slice(from: number, to: number): RecordTable {
    const t = new RecordTable();
    t.lsn = this.lsn.slice(from, to);
    t.end = this.end.slice(from, to);
    t.xid = this.xid.slice(from, to);
    t.totLen = this.totLen.slice(from, to);
    t.rmid = this.rmid.slice(from, to);
    t.info = this.info.slice(from, to);
    t.length = to - from;
    return t;
  }

  /** Bytes per row when serialized. */
  static readonly ROW_BYTES = 8 + 8 + 4 + 4 + 1 + 1;

  /** Serializes the rows column by column. */
  serialize(): Buffer {
    return serializeColumns(this.#columns(), this.length);
  }

  /**
   * What {@linkcode serialize} returns, as views of the columns (one per column, in order):
   * for writing the table without copying it. Valid while the table is not pushed to.
   *
   * @example
   * ```ts
   * const parts = table.serializedParts();
   * Buffer.concat(parts).equals(table.serialize()); // true
   * ```
   */
  serializedParts(): Buffer[] {
    return columnBytes(this.#columns(), this.length);
  }

  /**
   * The same rows in columns of exactly `length` values (this table when its columns are
   * already that long): what a table that stays in memory should keep, not the room grown
   * for more rows.
   *
   * @example
   * ```ts
   * const kept = table.compact();
   * kept.lsn.length === table.length; // true
   * ```
   */
  compact(): RecordTable {
    const n = this.length;
    if (this.#columns().every((col) => col.length === n)) return this;
    const t = new RecordTable();
    t.lsn = exact(this.lsn, n);
    t.end = exact(this.end, n);
    t.xid = exact(this.xid, n);
    t.totLen = exact(this.totLen, n);
    t.rmid = exact(this.rmid, n);
    t.info = exact(this.info, n);
    t.length = n;
    return t;
  }

  #columns(): Column[] {
    return [this.lsn, this.end, this.xid, this.totLen, this.rmid, this.info];
  }

  /** Reads what {@linkcode serialize} wrote. */
  static deserialize(buf: Buffer, n: number): RecordTable {
    const t = new RecordTable();
    const [lsn, end, xid, totLen, rmid, info] = deserializeColumns(buf, n, [
      BigUint64Array,
      BigUint64Array,
      Uint32Array,
      Uint32Array,
      Uint8Array,
      Uint8Array,
    ]);
    t.lsn = lsn as BigUint64Array<ArrayBuffer>;
    t.end = end as BigUint64Array<ArrayBuffer>;
    t.xid = xid as Uint32Array<ArrayBuffer>;
    t.totLen = totLen as Uint32Array<ArrayBuffer>;
    t.rmid = rmid as Uint8Array<ArrayBuffer>;
    t.info = info as Uint8Array<ArrayBuffer>;
    t.length = n;
    return t;
  }
}

/** Block-reference flag: the record carries a full-page image of the block. */
export const BLOCK_HAS_IMAGE = 1;
/** Block-reference flag: the image is to be applied on replay (not only for verification). */
export const BLOCK_APPLY_IMAGE = 2;
/** Block-reference flag: the record initializes the page (WILL_INIT). */
export const BLOCK_WILL_INIT = 4;

/** A relation block, as the block index is queried by. */
export interface BlockKey {
  spc: number;
  db: number;
  rel: number;
  /** 0 main, 1 fsm, 2 vm, 3 init. */
  fork: number;
  blk: number;
}

/**
 * One row per block reference: which relation block, flags, and the row of the record
 * in the layer's {@linkcode RecordTable}. Sorted by block (then record) once frozen.
 *
 * @example
 * ```ts
 * import { BlockTable } from "tideline/timeline";
 * const b = new BlockTable();
 * b.push({ spc: 1663, db: 5, rel: 16384, fork: 0, blk: 0 }, 1, 0);
 * b.find({ spc: 1663, db: 5, rel: 16384, fork: 0, blk: 0 }); // [0]
 * ```
 */
export class BlockTable {
  spc = new Uint32Array(0);
  db = new Uint32Array(0);
  rel = new Uint32Array(0);
  blk = new Uint32Array(0);
  record = new Uint32Array(0);
  fork = new Uint8Array(0);
  flags = new Uint8Array(0);
  length = 0;
  sorted = true;

  /** Appends a reference. */
  pushRaw(
    spc: number,
    db: number,
    rel: number,
    fork: number,
    blk: number,
    flags: number,
    record: number,
  ): void {
    const i = this.length;
    if (i === this.spc.length) this.reserve(i + 1);
    this.spc[i] = spc;
    this.db[i] = db;
    this.rel[i] = rel;
    this.fork[i] = fork;
    this.blk[i] = blk;
    this.flags[i] = flags;
    this.record[i] = record;
    this.length = i + 1;
    this.sorted = false;
  }

  /**
   * Makes room for `n` rows, so that pushing that many does not grow the columns (each
   * growth copies them).
   *
   * @example
   * ```ts
   * new BlockTable().reserve(100_000);
   * ```
   */
  reserve(n: number): void {
    this.spc = grow(this.spc, (k) => new Uint32Array(k), n);
    this.db = grow(this.db, (k) => new Uint32Array(k), n);
    this.rel = grow(this.rel, (k) => new Uint32Array(k), n);
    this.blk = grow(this.blk, (k) => new Uint32Array(k), n);
    this.record = grow(this.record, (k) => new Uint32Array(k), n);
    this.fork = grow(this.fork, (k) => new Uint8Array(k), n);
    this.flags = grow(this.flags, (k) => new Uint8Array(k), n);
  }

  /**
   * The same rows in columns of exactly `length` values (this table when its columns are
   * already that long), still sorted if it was.
   *
   * @example
   * ```ts
   * const kept = table.compact();
   * kept.spc.length === table.length; // true
   * ```
   */
  compact(): BlockTable {
    const n = this.length;
    if (this.#columns().every((col) => col.length === n)) return this;
    const t = new BlockTable();
    t.spc = exact(this.spc, n);
    t.db = exact(this.db, n);
    t.rel = exact(this.rel, n);
    t.blk = exact(this.blk, n);
    t.record = exact(this.record, n);
    t.fork = exact(this.fork, n);
    t.flags = exact(this.flags, n);
    t.length = n;
    t.sorted = this.sorted;
    return t;
  }

  /** Appends a reference given as a key. */
  push(key: BlockKey, flags: number, record: number): void {
    this.pushRaw(key.spc, key.db, key.rel, key.fork, key.blk, flags, record);
  }

  #cmp(i: number, key: BlockKey): number {
    return (
      this.spc[i]! - key.spc ||
      this.db[i]! - key.db ||
      this.rel[i]! - key.rel ||
      this.fork[i]! - key.fork ||
      this.blk[i]! - key.blk
    );
  }

  /** Row numbers referring to `key`, in record order. */
  find(key: BlockKey): number[] {
    const rows: number[] = [];
    if (!this.sorted) {
      for (let i = 0; i < this.length; i++) if (this.#cmp(i, key) === 0) rows.push(i);
      return rows;
    }
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#cmp(mid, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.length && this.#cmp(i, key) === 0; i++) rows.push(i);
    return rows;
  }

  /** A copy sorted by block, then record; rows of records at or after `fromRecord` only, renumbered. */
  sortedCopy(fromRecord = 0, toRecord = Number.POSITIVE_INFINITY): BlockTable {
    // Record numbers are uint32: a bound past them (Infinity by default) selects them all.
    const to = Math.min(toRecord, 2 ** 32);
    let order = new Uint32Array(this.length);
    const n = selectRows(this.record, this.length, fromRecord, to, order);
    order = order.subarray(0, n);
    // Rows were appended in record order, so a stable sort by block keeps each block's
    // records in order. LSD radix sort, 8 bits a pass, least significant key first. Only
    // the bits that differ between rows are sorted on: in a layer, spc, db and fork are
    // usually the same everywhere and rel and blk vary in their low bits only, so a layer
    // takes a few passes over 256 buckets (not nine over 65 536, which cost more than the
    // rows themselves in a 16 MiB layer).
    if (n > 1) {
      let scratch = new Uint32Array(n);
      const counts = new Uint32Array(256);
      for (const column of [this.blk, this.fork, this.rel, this.db, this.spc] as const) {
        const wide = column instanceof Uint32Array;
        const differ = wide ? differing32(column, order, n) : differing8(column, order, n);
        for (let shift = 0; shift < 32 && differ >>> shift !== 0; shift += 8) {
          if (((differ >>> shift) & 0xff) === 0) continue;
          if (wide) radixPass32(column, shift, order, scratch, counts, n);
          else radixPass8(column as Uint8Array, shift, order, scratch, counts, n);
          const t = order;
          order = scratch;
          scratch = t;
        }
      }
    }
    const t = new BlockTable();
    t.spc = gather32(this.spc, order, n);
    t.db = gather32(this.db, order, n);
    t.rel = gather32(this.rel, order, n);
    t.blk = gather32(this.blk, order, n);
    t.record = gather32(this.record, order, n, fromRecord);
    t.fork = gather8(this.fork, order, n);
    t.flags = gather8(this.flags, order, n);
    t.length = n;
    t.sorted = true;
    return t;
  }

  /** Bytes per row when serialized. */
  static readonly ROW_BYTES = 4 * 5 + 2;

  /** Serializes the rows column by column (call on a sorted table). */
  serialize(): Buffer {
    return serializeColumns(this.#columns(), this.length);
  }

  /**
   * What {@linkcode serialize} returns, as views of the columns (one per column, in order):
   * for writing the table without copying it. Valid while the table is not pushed to.
   *
   * @example
   * ```ts
   * const parts = table.sortedCopy().serializedParts();
   * ```
   */
  serializedParts(): Buffer[] {
    return columnBytes(this.#columns(), this.length);
  }

  #columns(): Column[] {
    return [this.spc, this.db, this.rel, this.blk, this.record, this.fork, this.flags];
  }

  /** Reads what {@linkcode serialize} wrote. */
  static deserialize(buf: Buffer, n: number): BlockTable {
    const t = new BlockTable();
    const cols = deserializeColumns(buf, n, [
      Uint32Array,
      Uint32Array,
      Uint32Array,
      Uint32Array,
      Uint32Array,
      Uint8Array,
      Uint8Array,
    ]);
    const u32 = cols.slice(0, 5) as Uint32Array<ArrayBuffer>[];
    [t.spc, t.db, t.rel, t.blk, t.record] = [u32[0]!, u32[1]!, u32[2]!, u32[3]!, u32[4]!];
    [t.fork, t.flags] = cols.slice(5) as Uint8Array<ArrayBuffer>[] as [
      Uint8Array<ArrayBuffer>,
      Uint8Array<ArrayBuffer>,
    ];
    t.length = n;
    t.sorted = true;
    return t;
  }
}
