/**
 * CRCs of a chunk's WAL records computed ahead, off the decoding thread: reading a chunk of a
 * segment file with {@link readWithRecordCrcs} has the native addon also walk the chunk and
 * checksum its records, on libuv's thread pool; the decoder, given the list with the chunk
 * ({@link WalDecoder.push}), then only compares. Without the addon there is no list, and the
 * decoder computes the CRCs itself, as always.
 *
 * @module
 */
import { read } from "node:fs";
import { nativeCrc } from "./native.js";
import { assertPageSize, DEFAULT_PAGE_SIZE } from "./segment.js";
import { DEFAULT_WAL_FORMAT, formatForMagic } from "./version.js";

/** The smallest WAL record: at most `length / 24 + 1` records start in `length` bytes. */
const MIN_RECORD = 24;

/** Passed to the constructor by this module only: nothing else can make a list. */
const MAKE: unique symbol = Symbol("RecordCrcList.make");

/** The parts of a list, for the decoder: set in the class body below, where its fields are visible. */
let listParts: (list: RecordCrcList) => { offsets: Int32Array; crcs: Int32Array; end: number };
let isGenuine: (value: unknown) => value is RecordCrcList;

/**
 * Where records of one chunk should start and their CRCs, as computed from the chunk's bytes:
 * only a guess at the record boundaries (the decoder uses a CRC only for a record that starts
 * exactly at a listed offset). Made by {@link readWithRecordCrcs}, used once, for that chunk;
 * its contents are private to the decoder, so that no caller can make or change the CRCs it
 * trusts.
 *
 * @example
 * ```ts
 * const { crcs } = await readWithRecordCrcs(fd, 0, chunk);
 * crcs?.count; // records listed
 * ```
 */
export class RecordCrcList {
  /** The chunk the list was computed from. */
  readonly chunk: Uint8Array;
  /** The WAL page size the chunk was walked with. */
  readonly pageSize: number;
  /** Records listed. */
  readonly count: number;
  readonly #offsets: Int32Array;
  readonly #crcs: Int32Array;
  readonly #end: number;

  /** @internal Only {@link readWithRecordCrcs} makes lists. */
  constructor(
    make: typeof MAKE,
    chunk: Uint8Array,
    pageSize: number,
    offsets: Int32Array,
    crcs: Int32Array,
    result: Int32Array,
  ) {
    if (make !== MAKE) throw new TypeError("RecordCrcList is made by readWithRecordCrcs() only");
    this.chunk = chunk;
    this.pageSize = pageSize;
    this.count = result[0]!;
    this.#offsets = offsets;
    this.#crcs = crcs;
    this.#end = result[1]!;
  }

  static {
    listParts = (list) => ({ offsets: list.#offsets, crcs: list.#crcs, end: list.#end });
    isGenuine = (value): value is RecordCrcList =>
      typeof value === "object" && value !== null && #offsets in value;
  }
}

/**
 * The decoder's view of a list: the offsets, their CRCs (as int32) and where the walk stopped.
 * Not part of the package's API (`tideline/wal` does not export it): a caller that could
 * change the CRCs could make the decoder accept damaged records.
 *
 * @example
 * ```ts
 * const { offsets, crcs, end } = crcListParts(list);
 * ```
 */
export function crcListParts(list: RecordCrcList): {
  offsets: Int32Array;
  crcs: Int32Array;
  end: number;
} {
  return listParts(list);
}

/**
 * True for a list made by {@link readWithRecordCrcs} for exactly `chunk`.
 *
 * @example
 * ```ts
 * isListFor(list, chunk); // true
 * ```
 */
export function isListFor(list: unknown, chunk: Uint8Array): boolean {
  return isGenuine(list) && list.chunk === chunk;
}

/** What {@link readWithRecordCrcs} read. */
export interface ChunkRead {
  /** The bytes read: a view of the buffer (all of it when it was filled). */
  readonly bytes: Buffer;
  /** The CRCs of their records, when the native addon computed them; pass with `bytes`. */
  readonly crcs: RecordCrcList | undefined;
}

/**
 * Reads up to `length` bytes of the WAL segment file `fd` at `position` (a multiple of
 * `pageSize`: the chunk starts at a page header) into `buffer`, and, with the native addon, also lists the records in them and computes
 * their CRCs, all in one job on libuv's thread pool: the decoder given both
 * ({@link WalDecoder.push}) then only compares CRCs. Without the addon it is an `fs.read`.
 * Fewer bytes than `length` come back only at the end of the file. `buffer` must not change
 * until the decoder has consumed the bytes; `fd` must stay open until the promise settles.
 *
 * `reuse`: the `crcs` of an earlier read whose bytes the decoder has consumed (and that nothing
 * else uses); its arrays are filled anew instead of allocated (~350 KB for 1 MiB).
 *
 * @throws RangeError (synchronously) when `length` exceeds `buffer`, `pageSize` is invalid or
 *   `position` is not a multiple of it.
 * @example
 * ```ts
 * const { bytes, crcs } = await readWithRecordCrcs(fd, 0, Buffer.allocUnsafeSlow(1 << 20));
 * dec.push(bytes, crcs);
 * ```
 */
export function readWithRecordCrcs(
  fd: number,
  position: number,
  buffer: Buffer,
  length: number = buffer.length,
  pageSize: number = DEFAULT_PAGE_SIZE,
  reuse?: RecordCrcList,
): Promise<ChunkRead> {
  assertPageSize(pageSize);
  if (!Number.isSafeInteger(length) || length < 0 || length > buffer.length) {
    throw new RangeError(`length must be an integer in [0, ${buffer.length}], got ${length}`);
  }
  if (!Number.isSafeInteger(position) || position < 0 || position % pageSize !== 0) {
    throw new RangeError(
      `position must be a non-negative multiple of the page size ${pageSize}, got ${position}`,
    );
  }
  const native = nativeCrc();
  if (native === undefined) {
    return new Promise((resolve, reject) => {
      read(fd, buffer, 0, length, position, (error, n) => {
        if (error !== null) reject(error);
        else resolve({ bytes: view(buffer, n), crcs: undefined });
      });
    });
  }
  const room = Math.floor(length / MIN_RECORD) + 1;
  const old = isGenuine(reuse) ? listParts(reuse) : undefined;
  const recycled = old !== undefined && old.offsets.length >= room;
  const offsets = recycled ? old.offsets : new Int32Array(room);
  const crcs = recycled ? old.crcs : new Int32Array(room);
  const result = new Int32Array(2);
  // The page flags are the same in every supported version.
  const flags = DEFAULT_WAL_FORMAT.pageInfo;
  return new Promise((resolve, reject) => {
    native.readRecordCrcsAsync(
      fd,
      position,
      buffer,
      length,
      pageSize,
      flags.longHeader,
      flags.firstIsContrecord,
      offsets,
      crcs,
      result,
      (error, n) => {
        if (error !== null) {
          reject(error);
          return;
        }
        const bytes = view(buffer, n!);
        // A page of an unknown version: nothing listed that the decoder would not reject.
        const known =
          bytes.length >= 2 && formatForMagic(bytes[0]! | (bytes[1]! << 8)) !== undefined;
        resolve({
          bytes,
          crcs: known ? new RecordCrcList(MAKE, bytes, pageSize, offsets, crcs, result) : undefined,
        });
      },
    );
  });
}

/** `buffer`'s first `n` bytes (itself when that is all of it). */
function view(buffer: Buffer, n: number): Buffer {
  return n === buffer.length ? buffer : buffer.subarray(0, n);
}
