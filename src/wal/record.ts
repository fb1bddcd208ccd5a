/**
 * WAL records: the fixed `XLogRecord` header, the block references and data headers that follow
 * it, and the lengths `pg_waldump` prints.
 *
 * Layout (native little-endian): u32 tot_len, u32 xid, u64 prev, u8 info, u8 rmid, 2 padding,
 * u32 crc; then, unaligned, headers until the bytes left equal the lengths they declare:
 * block references (id 0..32), `0xFF` short main data (u8 length), `0xFE` long main data (u32
 * length), `0xFD` replication origin (u16), `0xFC` top-level xid (u32). The payload follows in
 * the same order: per block its image then its data, then the main data.
 *
 * @module
 */

import { crc32cRange } from "./crc32c.js";
import { WalBlockRefError, WalCrcMismatchError, WalRecordLengthError } from "./errors.js";
import { formatLsn, type Lsn, lsnFromParts } from "./lsn.js";
import { DEFAULT_WAL_FORMAT, FORK_NAMES, type WalFormat } from "./version.js";

/**
 * Size of the fixed record header (`SizeOfXLogRecord`).
 *
 * @example
 * ```ts
 * RECORD_HEADER_SIZE; // 24
 * ```
 */
export const RECORD_HEADER_SIZE = 24;

/**
 * How a full-page image is compressed.
 *
 * @example
 * ```ts
 * if (block.compression !== "none") console.log(`image compressed with ${block.compression}`);
 * ```
 */
export type ImageCompression = "none" | "pglz" | "lz4" | "zstd";

/**
 * One block reference of a record. Instances belong to their {@link WalRecord} and are reused
 * by the decoder: read what you need before the next record, or use {@link WalRecord.toInfo}.
 *
 * @example
 * ```ts
 * for (const b of record.blocks) console.log(b.id, `${b.spc}/${b.db}/${b.rel}`, b.fork, b.blk, b.hasImage);
 * ```
 */
export class BlockRef {
  /** Block reference id (0..32). */
  id = 0;
  /** Raw `fork_flags` byte. */
  forkFlags = 0;
  /** Fork number: 0 main, 1 fsm, 2 vm, 3 init. */
  fork = 0;
  hasImage = false;
  hasData = false;
  willInit = false;
  /** The relation was omitted in WAL (same as the previous block's). */
  sameRel = false;
  /** Tablespace OID. */
  spc = 0;
  /** Database OID. */
  db = 0;
  /** Relation file number. */
  rel = 0;
  /** Block number. */
  blk = 0;
  /** Bytes of block data (not counting the image). */
  dataLen = 0;
  /** Offset of the block data from the record start. */
  dataOffset = 0;
  /** Stored image bytes (`bimg_len`), 0 without image. */
  imageLen = 0;
  /** Offset of the image from the record start. */
  imageOffset = 0;
  /** Hole offset and length (bytes of zeros removed from the page). */
  holeOffset = 0;
  holeLength = 0;
  /** Raw `bimg_info` byte. */
  bimgInfo = 0;
  /** The image is to be restored in redo (not only for consistency checking). */
  applyImage = false;
  compression: ImageCompression = "none";

  /**
   * The fork's name as PostgreSQL prints it (`main`, `fsm`, `vm`, `init`).
   *
   * @example
   * ```ts
   * block.forkName; // "main"
   * ```
   */
  get forkName(): string {
    return FORK_NAMES[this.fork] ?? `fork${this.fork}`;
  }

  /**
   * A detached plain copy.
   *
   * @example
   * ```ts
   * const kept = block.toInfo();
   * ```
   */
  toInfo(): BlockInfo {
    return {
      id: this.id,
      rel: { spc: this.spc, db: this.db, rel: this.rel },
      fork: this.fork,
      forkName: this.forkName,
      blk: this.blk,
      hasImage: this.hasImage,
      hasData: this.hasData,
      willInit: this.willInit,
      dataLen: this.dataLen,
      imageLen: this.imageLen,
      holeOffset: this.holeOffset,
      holeLength: this.holeLength,
      bimgInfo: this.bimgInfo,
      applyImage: this.applyImage,
      compression: this.compression,
    };
  }
}

/**
 * A detached description of a block reference.
 *
 * @example
 * ```ts
 * const b: BlockInfo = record.blocks[0]!.toInfo(); // { id: 0, rel: { spc: 1663, db: 5, rel: 16384 }, ... }
 * ```
 */
export interface BlockInfo {
  id: number;
  rel: { spc: number; db: number; rel: number };
  fork: number;
  forkName: string;
  blk: number;
  hasImage: boolean;
  hasData: boolean;
  willInit: boolean;
  dataLen: number;
  imageLen: number;
  holeOffset: number;
  holeLength: number;
  bimgInfo: number;
  applyImage: boolean;
  compression: ImageCompression;
}

/**
 * A detached description of a record (what `tideline waldump --json` needs).
 *
 * @example
 * ```ts
 * const info: RecordInfo = record.toInfo(); // survives the next decoder.next()
 * ```
 */
export interface RecordInfo {
  lsn: Lsn;
  /** Where the next record starts (PostgreSQL's `EndRecPtr`). */
  end: Lsn;
  prev: Lsn;
  rmid: number;
  info: number;
  xid: number;
  /** `pg_waldump`'s `len (rec/tot)`: total length minus image bytes. */
  recLen: number;
  totLen: number;
  /** Sum of the stored image lengths. */
  fpiLen: number;
  blocks: BlockInfo[];
  mainDataLen: number;
  origin?: number;
  toplevelXid?: number;
}

/**
 * A decoded WAL record. The decoder reuses one instance: it and its `blocks` are valid until the
 * next call to the decoder's `next()`; call {@link WalRecord.detach} or {@link WalRecord.toInfo}
 * to keep one.
 *
 * @example
 * ```ts
 * const rec = decoder.next();
 * if (rec) console.log(formatLsn(rec.lsn), rec.rmid, rec.recLen, rec.totLen, rec.blocks.length);
 * ```
 */
export class WalRecord {
  /** High and low halves of the record's LSN (cheap access without a bigint). */
  lsnHi = 0;
  lsnLo = 0;
  /** High and low halves of `end`. */
  endHi = 0;
  endLo = 0;
  /** `xl_tot_len`. */
  totLen = 0;
  /** `xl_xid`. */
  xid = 0;
  /** `xl_info`. */
  info = 0;
  /** `xl_rmid`. */
  rmid = 0;
  /** `xl_crc`. */
  crc = 0;
  /** Replication origin (0 when none). */
  originId = 0;
  hasOrigin = false;
  /** Top-level transaction id of a subtransaction's record (0 when none). */
  toplevelXidValue = 0;
  mainDataLen = 0;
  /** Offset of the main data from the record start. */
  mainDataOffset = 0;
  /** The block references, in id order. */
  readonly blocks: BlockRef[] = [];
  /** Sum of image lengths. */
  fpiLen = 0;
  /** The bytes the record lives in, and where it starts in them. */
  buffer: Buffer = EMPTY;
  offset = 0;
  /** The format and data page size the record was decoded with. */
  format: WalFormat = DEFAULT_WAL_FORMAT;
  blockSize = 8192;
  private readonly pool: BlockRef[] = [];

  /**
   * The record's LSN.
   *
   * @example
   * ```ts
   * formatLsn(rec.lsn); // "0/1557C28"
   * ```
   */
  get lsn(): Lsn {
    return lsnFromParts(this.lsnHi, this.lsnLo);
  }

  /**
   * Where the next record starts (PostgreSQL's `EndRecPtr`; for XLOG_SWITCH the segment's end).
   *
   * @example
   * ```ts
   * formatLsn(rec.end);
   * ```
   */
  get end(): Lsn {
    return lsnFromParts(this.endHi, this.endLo);
  }

  /**
   * `xl_prev`: the previous record's LSN.
   *
   * @example
   * ```ts
   * formatLsn(rec.prev);
   * ```
   */
  get prev(): Lsn {
    return this.buffer.readBigUInt64LE(this.offset + 8);
  }

  /**
   * `pg_waldump`'s record length: `totLen - fpiLen`.
   *
   * @example
   * ```ts
   * `len (rec/tot): ${rec.recLen}/${rec.totLen}`;
   * ```
   */
  get recLen(): number {
    return this.totLen - this.fpiLen;
  }

  /**
   * The high nibble of `info`, the part that belongs to the resource manager.
   *
   * @example
   * ```ts
   * rec.rmid === 0 && rec.rmgrInfo === 0x40; // XLOG_SWITCH
   * ```
   */
  get rmgrInfo(): number {
    return this.info & 0xf0;
  }

  /**
   * Replication origin, or `undefined` when the record has none.
   *
   * @example
   * ```ts
   * rec.origin; // undefined
   * ```
   */
  get origin(): number | undefined {
    return this.hasOrigin ? this.originId : undefined;
  }

  /**
   * Top-level xid for a subtransaction's first record, or `undefined`.
   *
   * @example
   * ```ts
   * rec.toplevelXid; // 735
   * ```
   */
  get toplevelXid(): number | undefined {
    return this.toplevelXidValue === 0 ? undefined : this.toplevelXidValue;
  }

  /**
   * The record's raw bytes (header included), a view valid until the decoder's next call.
   *
   * @example
   * ```ts
   * const copy = Buffer.from(rec.bytes());
   * ```
   */
  bytes(): Buffer {
    return this.buffer.subarray(this.offset, this.offset + this.totLen);
  }

  /**
   * The main data, a view valid until the decoder's next call.
   *
   * @example
   * ```ts
   * rec.mainData().readBigUInt64LE(0);
   * ```
   */
  mainData(): Buffer {
    const s = this.offset + this.mainDataOffset;
    return this.buffer.subarray(s, s + this.mainDataLen);
  }

  /**
   * A block's data (not its image), a view valid until the decoder's next call.
   *
   * @example
   * ```ts
   * rec.blockData(rec.blocks[0]!);
   * ```
   */
  blockData(block: BlockRef): Buffer {
    const s = this.offset + block.dataOffset;
    return this.buffer.subarray(s, s + block.dataLen);
  }

  /**
   * A block's stored (possibly compressed, hole removed) image, a view valid until the next
   * call.
   *
   * @example
   * ```ts
   * rec.blockImage(rec.blocks[0]!).length === rec.blocks[0]!.imageLen; // true
   * ```
   */
  blockImage(block: BlockRef): Buffer {
    const s = this.offset + block.imageOffset;
    return this.buffer.subarray(s, s + block.imageLen);
  }

  /**
   * The block reference with id `id`, or `undefined`.
   *
   * @example
   * ```ts
   * rec.block(0)?.blk;
   * ```
   */
  block(id: number): BlockRef | undefined {
    for (const b of this.blocks) if (b.id === id) return b;
    return undefined;
  }

  /**
   * A detached plain description.
   *
   * @example
   * ```ts
   * JSON.stringify(rec.toInfo(), (_k, v) => (typeof v === "bigint" ? formatLsn(v) : v));
   * ```
   */
  toInfo(): RecordInfo {
    const info: RecordInfo = {
      lsn: this.lsn,
      end: this.end,
      prev: this.prev,
      rmid: this.rmid,
      info: this.info,
      xid: this.xid,
      recLen: this.recLen,
      totLen: this.totLen,
      fpiLen: this.fpiLen,
      blocks: this.blocks.map((b) => b.toInfo()),
      mainDataLen: this.mainDataLen,
    };
    if (this.hasOrigin) info.origin = this.originId;
    if (this.toplevelXidValue !== 0) info.toplevelXid = this.toplevelXidValue;
    return info;
  }

  /**
   * An independent copy (own bytes, own block objects) that stays valid.
   *
   * @example
   * ```ts
   * const kept: WalRecord[] = [];
   * for (const r of decoder.records()) kept.push(r.detach());
   * ```
   */
  detach(): WalRecord {
    const r = new WalRecord();
    r.lsnHi = this.lsnHi;
    r.lsnLo = this.lsnLo;
    r.endHi = this.endHi;
    r.endLo = this.endLo;
    r.buffer = Buffer.from(this.bytes());
    r.offset = 0;
    decodeRecordInto(r, r.buffer, 0, this.format, this.blockSize);
    return r;
  }

  /** @internal the reusable block reference for slot `i`. */
  blockSlot(i: number): BlockRef {
    let b = this.pool[i];
    if (b === undefined) {
      b = new BlockRef();
      this.pool[i] = b;
    }
    return b;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Computes a record's CRC32C as PostgreSQL does: over bytes 24..totLen, then the header's first
 * 20 bytes (everything before `xl_crc`).
 *
 * @example
 * ```ts
 * recordCrc(buf, 0, buf.readUInt32LE(0)) === buf.readUInt32LE(20); // true for a valid record
 * ```
 */
export function recordCrc(buf: Buffer, offset: number, totLen: number): number {
  return crc32cRange(
    buf,
    offset,
    offset + 20,
    crc32cRange(buf, offset + RECORD_HEADER_SIZE, offset + totLen),
  );
}

/**
 * Checks a record's CRC.
 *
 * @throws WalCrcMismatchError naming `lsn`.
 * @example
 * ```ts
 * verifyRecordCrc(buf, 0, 0x1000028n);
 * ```
 */
export function verifyRecordCrc(buf: Buffer, offset: number, lsn: Lsn): void {
  const totLen = buf.readUInt32LE(offset);
  const stored = buf.readUInt32LE(offset + 20);
  const actual = recordCrc(buf, offset, totLen);
  if (stored !== actual) throw new WalCrcMismatchError(lsn, stored, actual);
}

/**
 * Decodes a complete, CRC-checked record at `buf[offset]` into `rec` (reusing its block
 * objects): the fixed header, then the block references and data headers, checking them as
 * PostgreSQL's `DecodeXLogRecord` does. Position fields (`lsnHi`/`lsnLo`, `endHi`/`endLo`) are
 * the caller's.
 *
 * @param blockSize the data page size (`BLCKSZ`), for the hole length of uncompressed images.
 * @throws WalRecordLengthError or WalBlockRefError naming the record's LSN.
 * @example
 * ```ts
 * const rec = new WalRecord();
 * decodeRecordInto(rec, segmentBytes, 0x28, walFormat(15));
 * ```
 */
export function decodeRecordInto(
  rec: WalRecord,
  buf: Buffer,
  offset: number,
  format: WalFormat = DEFAULT_WAL_FORMAT,
  blockSize = 8192,
): void {
  const totLen = buf.readUInt32LE(offset);
  if (totLen < RECORD_HEADER_SIZE || offset + totLen > buf.length) {
    throw new WalRecordLengthError(
      rec.lsn,
      totLen,
      `invalid record length at ${formatLsn(rec.lsn)}: expected at least ${RECORD_HEADER_SIZE} and at most ${buf.length - offset}, got ${totLen}`,
    );
  }
  rec.format = format;
  rec.blockSize = blockSize;
  rec.buffer = buf;
  rec.offset = offset;
  rec.totLen = totLen;
  rec.xid = buf.readUInt32LE(offset + 4);
  rec.info = buf[offset + 16]!;
  rec.rmid = buf[offset + 17]!;
  rec.crc = buf.readUInt32LE(offset + 20);
  rec.hasOrigin = false;
  rec.originId = 0;
  rec.toplevelXidValue = 0;
  rec.mainDataLen = 0;
  rec.mainDataOffset = totLen;
  rec.fpiLen = 0;
  const blocks = rec.blocks;
  let nblocks = 0;

  const bf = format.blockFlags;
  const imf = format.imageFlags;
  const compressMask = imf.compressPglz | imf.compressLz4 | imf.compressZstd;
  const end = offset + totLen;
  let p = offset + RECORD_HEADER_SIZE;
  let datatotal = 0;
  let maxId = -1;
  let lastRel = -1; // index in blocks of the last block that named its relation

  while (end - p > datatotal) {
    const id = buf[p++]!;
    if (id === format.blockIdDataShort) {
      if (end - p < 1) throw shortData(rec, totLen);
      rec.mainDataLen = buf[p++]!;
      datatotal += rec.mainDataLen;
      break;
    }
    if (id === format.blockIdDataLong) {
      if (end - p < 4) throw shortData(rec, totLen);
      rec.mainDataLen = buf.readUInt32LE(p);
      p += 4;
      datatotal += rec.mainDataLen;
      break;
    }
    if (id === format.blockIdOrigin) {
      if (end - p < 2) throw shortData(rec, totLen);
      rec.originId = buf.readUInt16LE(p);
      rec.hasOrigin = true;
      p += 2;
      continue;
    }
    if (id === format.blockIdToplevelXid) {
      if (end - p < 4) throw shortData(rec, totLen);
      rec.toplevelXidValue = buf.readUInt32LE(p);
      p += 4;
      continue;
    }
    if (id > format.maxBlockId) {
      throw new WalBlockRefError(rec.lsn, id, `invalid block_id ${id} at ${formatLsn(rec.lsn)}`);
    }
    if (id <= maxId) {
      throw new WalBlockRefError(
        rec.lsn,
        id,
        `out-of-order block_id ${id} at ${formatLsn(rec.lsn)}: expected more than ${maxId}`,
      );
    }
    maxId = id;
    if (end - p < 3) throw shortData(rec, totLen);
    const b = rec.blockSlot(nblocks);
    const ff = buf[p]!;
    b.id = id;
    b.forkFlags = ff;
    b.fork = ff & bf.forkMask;
    b.hasImage = (ff & bf.hasImage) !== 0;
    b.hasData = (ff & bf.hasData) !== 0;
    b.willInit = (ff & bf.willInit) !== 0;
    b.sameRel = (ff & bf.sameRel) !== 0;
    b.dataLen = buf.readUInt16LE(p + 1);
    p += 3;
    if (b.hasData && b.dataLen === 0) {
      throw new WalBlockRefError(
        rec.lsn,
        id,
        `BKPBLOCK_HAS_DATA set, but no data included at ${formatLsn(rec.lsn)} (block ${id})`,
      );
    }
    if (!b.hasData && b.dataLen !== 0) {
      throw new WalBlockRefError(
        rec.lsn,
        id,
        `BKPBLOCK_HAS_DATA not set, but data length is ${b.dataLen} at ${formatLsn(rec.lsn)} (block ${id})`,
      );
    }
    datatotal += b.dataLen;
    if (b.hasImage) {
      if (end - p < 5) throw shortData(rec, totLen);
      b.imageLen = buf.readUInt16LE(p);
      b.holeOffset = buf.readUInt16LE(p + 2);
      const bi = buf[p + 4]!;
      p += 5;
      b.bimgInfo = bi;
      b.applyImage = (bi & imf.apply) !== 0;
      const compressed = (bi & compressMask) !== 0;
      b.compression = !compressed
        ? "none"
        : bi & imf.compressPglz
          ? "pglz"
          : bi & imf.compressLz4
            ? "lz4"
            : "zstd";
      const hasHole = (bi & imf.hasHole) !== 0;
      if (compressed) {
        if (hasHole) {
          if (end - p < 2) throw shortData(rec, totLen);
          b.holeLength = buf.readUInt16LE(p);
          p += 2;
        } else b.holeLength = 0;
      } else b.holeLength = blockSize - b.imageLen;
      datatotal += b.imageLen;
      rec.fpiLen += b.imageLen;
      if (hasHole && (b.holeOffset === 0 || b.holeLength === 0 || b.imageLen === blockSize)) {
        throw new WalBlockRefError(
          rec.lsn,
          id,
          `BKPIMAGE_HAS_HOLE set, but hole offset ${b.holeOffset} length ${b.holeLength} block image length ${b.imageLen} at ${formatLsn(rec.lsn)} (block ${id})`,
        );
      }
      if (!hasHole && (b.holeOffset !== 0 || b.holeLength !== 0)) {
        throw new WalBlockRefError(
          rec.lsn,
          id,
          `BKPIMAGE_HAS_HOLE not set, but hole offset ${b.holeOffset} length ${b.holeLength} at ${formatLsn(rec.lsn)} (block ${id})`,
        );
      }
      if (compressed && b.imageLen === blockSize) {
        throw new WalBlockRefError(
          rec.lsn,
          id,
          `BKPIMAGE_COMPRESSED set, but block image length ${b.imageLen} at ${formatLsn(rec.lsn)} (block ${id})`,
        );
      }
    } else {
      b.imageLen = 0;
      b.holeOffset = 0;
      b.holeLength = 0;
      b.bimgInfo = 0;
      b.applyImage = false;
      b.compression = "none";
    }
    if (!b.sameRel) {
      if (end - p < 12) throw shortData(rec, totLen);
      b.spc = buf.readUInt32LE(p);
      b.db = buf.readUInt32LE(p + 4);
      b.rel = buf.readUInt32LE(p + 8);
      p += 12;
      lastRel = nblocks;
    } else {
      const prevBlock = lastRel < 0 ? undefined : blocks[lastRel];
      if (prevBlock === undefined) {
        throw new WalBlockRefError(
          rec.lsn,
          id,
          `BKPBLOCK_SAME_REL set but no previous rel at ${formatLsn(rec.lsn)} (block ${id})`,
        );
      }
      b.spc = prevBlock.spc;
      b.db = prevBlock.db;
      b.rel = prevBlock.rel;
    }
    if (end - p < 4) throw shortData(rec, totLen);
    b.blk = buf.readUInt32LE(p);
    p += 4;
    blocks[nblocks++] = b;
  }
  if (blocks.length !== nblocks) blocks.length = nblocks;
  if (end - p !== datatotal) throw shortData(rec, totLen);

  // Payload: per block its image then its data, then the main data.
  let q = p - offset;
  for (const b of blocks) {
    b.imageOffset = q;
    q += b.imageLen;
    b.dataOffset = q;
    q += b.dataLen;
  }
  rec.mainDataOffset = q;
}

/**
 * What {@link recordImageBytes} found besides the image bytes it returns: the main data
 * length, whether an origin is recorded, the origin id and the top-level xid (0 when none).
 * Overwritten by every call.
 */
const walked = { mainDataLen: 0, hasOrigin: false, originId: 0, toplevel: 0 };

/**
 * The bytes of block images in the WAL record at `offset` of `buf` (`xl_tot_len` `totLen`,
 * at least 24, lying in `buf`), after the checks {@link decodeRecordInto} makes of its block
 * and data headers; -1 when one fails (`decodeRecordInto` then names the error). For callers
 * that only count records, such as `WalDecoder.tally`. With `limit`, the bytes of `buf` from
 * there on are not the record's (it continues on a later page): -1 when its headers reach
 * them. It also leaves the main data length, origin and top-level xid in `walked` (for
 * {@link scanRecordInto}).
 *
 * @example
 * ```ts
 * const fpi = recordImageBytes(buf, off, buf.readUInt32LE(off), fmt, 8192);
 * if (fpi < 0) decodeRecordInto(rec, buf, off, fmt); // throws the error
 * ```
 */
export function recordImageBytes(
  buf: Buffer,
  offset: number,
  totLen: number,
  format: WalFormat,
  blockSize: number,
  limit: number = offset + totLen,
): number {
  const end = offset + totLen;
  // Bytes from `limit` on are not the record's (a record continued on a later page): a header
  // reaching them gives -1, as if invalid, and the caller decides on the assembled record.
  const room = Math.min(end, limit);
  let p = offset + RECORD_HEADER_SIZE;
  let datatotal = 0;
  let maxId = -1;
  let haveRel = false;
  let fpiLen = 0;
  let mainDataLen = 0;
  let hasOrigin = false;
  let originId = 0;
  let toplevel = 0;
  const bf = format.blockFlags;
  const imf = format.imageFlags;
  const compressMask = imf.compressPglz | imf.compressLz4 | imf.compressZstd;
  const maxBlockId = format.maxBlockId;
  while (end - p > datatotal) {
    if (p >= room) return -1;
    const id = buf[p++]!;
    if (id > maxBlockId) {
      if (id === format.blockIdDataShort) {
        if (room - p < 1) return -1;
        mainDataLen = buf[p++]!;
        datatotal += mainDataLen;
        break;
      }
      if (id === format.blockIdDataLong) {
        if (room - p < 4) return -1;
        mainDataLen =
          (buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24)) >>> 0;
        p += 4;
        datatotal += mainDataLen;
        break;
      }
      if (id === format.blockIdOrigin) {
        if (room - p < 2) return -1;
        originId = buf[p]! | (buf[p + 1]! << 8);
        hasOrigin = true;
        p += 2;
        continue;
      }
      if (id === format.blockIdToplevelXid) {
        if (room - p < 4) return -1;
        toplevel = (buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24)) >>> 0;
        p += 4;
        continue;
      }
      return -1;
    }
    if (id <= maxId) return -1;
    maxId = id;
    if (room - p < 3) return -1;
    const ff = buf[p]!;
    const dataLen = buf[p + 1]! | (buf[p + 2]! << 8);
    p += 3;
    if ((ff & bf.hasData) !== 0 ? dataLen === 0 : dataLen !== 0) return -1;
    datatotal += dataLen;
    if ((ff & bf.hasImage) !== 0) {
      if (room - p < 5) return -1;
      const imageLen = buf[p]! | (buf[p + 1]! << 8);
      const holeOffset = buf[p + 2]! | (buf[p + 3]! << 8);
      const bi = buf[p + 4]!;
      p += 5;
      const compressed = (bi & compressMask) !== 0;
      const hasHole = (bi & imf.hasHole) !== 0;
      let holeLength: number;
      if (compressed) {
        if (hasHole) {
          if (room - p < 2) return -1;
          holeLength = buf[p]! | (buf[p + 1]! << 8);
          p += 2;
        } else holeLength = 0;
      } else holeLength = blockSize - imageLen;
      datatotal += imageLen;
      fpiLen += imageLen;
      if (hasHole) {
        if (holeOffset === 0 || holeLength === 0 || imageLen === blockSize) return -1;
      } else if (holeOffset !== 0 || holeLength !== 0) return -1;
      if (compressed && imageLen === blockSize) return -1;
    }
    if ((ff & bf.sameRel) === 0) {
      if (room - p < 12) return -1;
      p += 12;
      haveRel = true;
    } else if (!haveRel) return -1;
    if (room - p < 4) return -1;
    p += 4;
  }
  if (end - p !== datatotal) return -1;
  walked.mainDataLen = mainDataLen;
  walked.hasOrigin = hasOrigin;
  walked.originId = originId;
  walked.toplevel = toplevel;
  return fpiLen;
}

/**
 * The scalar part of {@link decodeRecordInto}, without filling block references: header
 * fields, `fpiLen`, main data, origin and top-level xid, with every check `decodeRecordInto`
 * makes. Returns false instead of throwing when the record is invalid (call `decodeRecordInto`
 * then for the error); `rec.blocks` is left empty.
 *
 * @example
 * ```ts
 * if (!scanRecordInto(rec, buf, off, fmt)) decodeRecordInto(rec, buf, off, fmt); // throws
 * ```
 */
export function scanRecordInto(
  rec: WalRecord,
  buf: Buffer,
  offset: number,
  format: WalFormat = DEFAULT_WAL_FORMAT,
  blockSize = 8192,
): boolean {
  const totLen =
    (buf[offset]! |
      (buf[offset + 1]! << 8) |
      (buf[offset + 2]! << 16) |
      (buf[offset + 3]! << 24)) >>>
    0;
  if (totLen < RECORD_HEADER_SIZE || offset + totLen > buf.length) return false;
  const fpiLen = recordImageBytes(buf, offset, totLen, format, blockSize);
  if (fpiLen < 0) return false;
  const mainDataLen = walked.mainDataLen;
  rec.format = format;
  rec.blockSize = blockSize;
  rec.buffer = buf;
  rec.offset = offset;
  rec.totLen = totLen;
  rec.xid =
    (buf[offset + 4]! |
      (buf[offset + 5]! << 8) |
      (buf[offset + 6]! << 16) |
      (buf[offset + 7]! << 24)) >>>
    0;
  rec.info = buf[offset + 16]!;
  rec.rmid = buf[offset + 17]!;
  rec.crc =
    (buf[offset + 20]! |
      (buf[offset + 21]! << 8) |
      (buf[offset + 22]! << 16) |
      (buf[offset + 23]! << 24)) >>>
    0;
  rec.hasOrigin = walked.hasOrigin;
  rec.originId = walked.originId;
  rec.toplevelXidValue = walked.toplevel;
  rec.mainDataLen = mainDataLen;
  rec.mainDataOffset = totLen - mainDataLen;
  rec.fpiLen = fpiLen;
  if (rec.blocks.length !== 0) rec.blocks.length = 0;
  return true;
}

function shortData(rec: WalRecord, totLen: number): WalRecordLengthError {
  return new WalRecordLengthError(
    rec.lsn,
    totLen,
    `record with invalid length at ${formatLsn(rec.lsn)}: its headers do not add up to its total length ${totLen}`,
  );
}
