/**
 * Builds synthetic WAL byte ranges for decoder tests: page headers (long at segment starts),
 * records with valid CRCs and prev-links laid across pages, continuation flags, XLOG_SWITCH
 * padding and abandoned records with FIRST_IS_OVERWRITE_CONTRECORD.
 *
 * @module
 */

import { crc32c } from "@node-rs/crc32";

/** A block reference to put in a synthetic record. */
export interface SynthBlock {
  id: number;
  fork?: number;
  rel: { spc: number; db: number; rel: number };
  blk: number;
  sameRel?: boolean;
  willInit?: boolean;
  data?: Buffer;
  /** A stored image: bytes, hole offset, bimg_info flags, and hole length if compressed. */
  image?: { bytes: Buffer; holeOffset: number; bimgInfo: number; holeLength?: number };
}

/** A synthetic record. */
export interface SynthRecord {
  rmid: number;
  info: number;
  xid?: number;
  blocks?: SynthBlock[];
  mainData?: Buffer;
  origin?: number;
  toplevelXid?: number;
}

/** Serializes a record (with CRC) whose xl_prev is `prev`. */
export function buildRecord(r: SynthRecord, prev: bigint): Buffer {
  const hdrs: Buffer[] = [];
  const payload: Buffer[] = [];
  for (const b of r.blocks ?? []) {
    const h: number[] = [b.id];
    let ff = (b.fork ?? 0) & 0x0f;
    if (b.image) ff |= 0x10;
    if (b.data && b.data.length > 0) ff |= 0x20;
    if (b.willInit) ff |= 0x40;
    if (b.sameRel) ff |= 0x80;
    h.push(ff);
    const dl = b.data?.length ?? 0;
    h.push(dl & 0xff, dl >> 8);
    if (b.image) {
      const il = b.image.bytes.length;
      h.push(
        il & 0xff,
        il >> 8,
        b.image.holeOffset & 0xff,
        b.image.holeOffset >> 8,
        b.image.bimgInfo,
      );
      if ((b.image.bimgInfo & 0x1c) !== 0 && (b.image.bimgInfo & 0x01) !== 0) {
        const hl = b.image.holeLength ?? 0;
        h.push(hl & 0xff, hl >> 8);
      }
      payload.push(b.image.bytes);
    }
    if (!b.sameRel) {
      const rel = Buffer.alloc(12);
      rel.writeUInt32LE(b.rel.spc, 0);
      rel.writeUInt32LE(b.rel.db, 4);
      rel.writeUInt32LE(b.rel.rel, 8);
      h.push(...rel);
    }
    const bn = Buffer.alloc(4);
    bn.writeUInt32LE(b.blk, 0);
    h.push(...bn);
    hdrs.push(Buffer.from(h));
    if (b.data) payload.push(b.data);
  }
  if (r.origin !== undefined) hdrs.push(Buffer.from([253, r.origin & 0xff, r.origin >> 8]));
  if (r.toplevelXid !== undefined) {
    const t = Buffer.alloc(5);
    t[0] = 252;
    t.writeUInt32LE(r.toplevelXid, 1);
    hdrs.push(t);
  }
  const md = r.mainData ?? Buffer.alloc(0);
  if (md.length > 0) {
    if (md.length < 256) hdrs.push(Buffer.from([255, md.length]));
    else {
      const t = Buffer.alloc(5);
      t[0] = 254;
      t.writeUInt32LE(md.length, 1);
      hdrs.push(t);
    }
    payload.push(md);
  }
  const body = Buffer.concat([...hdrs, ...payload]);
  const rec = Buffer.alloc(24 + body.length);
  rec.writeUInt32LE(rec.length, 0);
  rec.writeUInt32LE(r.xid ?? 0, 4);
  rec.writeBigUInt64LE(prev, 8);
  rec[16] = r.info;
  rec[17] = r.rmid;
  body.copy(rec, 24);
  fixCrc(rec, 0);
  return rec;
}

/** Recomputes the CRC of the record at `buf[off]` (after a deliberate edit). */
export function fixCrc(buf: Buffer, off: number): void {
  const tot = buf.readUInt32LE(off);
  const c = crc32c(buf.subarray(off, off + 20), crc32c(buf.subarray(off + 24, off + tot)));
  buf.writeUInt32LE(c, off + 20);
}

/** Options of {@link WalBuilder}. */
export interface WalBuilderOptions {
  /** Where the bytes start: must be a page start. */
  startLsn: bigint;
  segmentSize?: number;
  pageSize?: number;
  magic?: number;
  systemId?: bigint;
  timeline?: number;
  /** xl_prev of the first record. */
  prev?: bigint;
}

/** Lays records out in pages as PostgreSQL does. */
export class WalBuilder {
  readonly startLsn: bigint;
  readonly segmentSize: number;
  readonly pageSize: number;
  readonly magic: number;
  readonly systemId: bigint;
  readonly timeline: number;
  private out: Buffer = Buffer.alloc(1 << 16);
  private len = 0; // bytes written from startLsn
  prev: bigint;
  /** LSN of each complete record written. */
  readonly lsns: bigint[] = [];
  private overwriteNext = false;

  constructor(o: WalBuilderOptions) {
    this.startLsn = o.startLsn;
    this.segmentSize = o.segmentSize ?? 1 << 20;
    this.pageSize = o.pageSize ?? 8192;
    this.magic = o.magic ?? 0xd110;
    this.systemId = o.systemId ?? 7_000_000_000_000_000_001n;
    this.timeline = o.timeline ?? 1;
    this.prev = o.prev ?? 0n;
    if (o.startLsn % BigInt(this.pageSize) !== 0n) throw new Error("startLsn must be a page start");
  }

  /** The current position. */
  get pos(): bigint {
    return this.startLsn + BigInt(this.len);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.out.length) return;
    const b = Buffer.alloc(Math.max(this.out.length * 2, this.len + n));
    this.out.copy(b, 0, 0, this.len);
    this.out = b;
  }

  private pageHeader(remLen: number): void {
    const pos = this.pos;
    const long = pos % BigInt(this.segmentSize) === 0n;
    const size = long ? 40 : 24;
    this.ensure(size);
    const b = this.out;
    const o = this.len;
    b.fill(0, o, o + size);
    let info = long ? 0x2 : 0;
    if (remLen > 0) info |= 0x1;
    if (this.overwriteNext) {
      info |= 0x8;
      this.overwriteNext = false;
    }
    b.writeUInt16LE(this.magic, o);
    b.writeUInt16LE(info, o + 2);
    b.writeUInt32LE(this.timeline, o + 4);
    b.writeBigUInt64LE(pos, o + 8);
    b.writeUInt32LE(remLen, o + 16);
    if (long) {
      b.writeBigUInt64LE(this.systemId, o + 24);
      b.writeUInt32LE(this.segmentSize, o + 32);
      b.writeUInt32LE(this.pageSize, o + 36);
    }
    this.len += size;
  }

  /** Writes `bytes` (a record, or its first part) at the current position, across pages. */
  private place(bytes: Buffer, limit = bytes.length): void {
    let done = 0;
    if (Number(this.pos % BigInt(this.pageSize)) === 0) this.pageHeader(0);
    while (done < limit) {
      const room = this.pageSize - Number(this.pos % BigInt(this.pageSize));
      const k = Math.min(room, limit - done);
      this.ensure(k);
      bytes.copy(this.out, this.len, done, done + k);
      this.len += k;
      done += k;
      if (done < limit && Number(this.pos % BigInt(this.pageSize)) === 0) {
        this.pageHeader(bytes.length - done);
      }
    }
  }

  private align(): void {
    const pad = Number((8n - (this.pos % 8n)) % 8n);
    this.ensure(pad);
    this.out.fill(0, this.len, this.len + pad);
    this.len += pad;
  }

  /** Appends a record; returns its LSN. */
  record(r: SynthRecord): bigint {
    return this.raw(buildRecord(r, this.prev));
  }

  /** Appends already-serialized record bytes; returns the LSN. */
  raw(bytes: Buffer): bigint {
    if (Number(this.pos % BigInt(this.pageSize)) === 0) this.pageHeader(0);
    const lsn = this.pos;
    this.place(bytes);
    this.align();
    this.prev = lsn;
    this.lsns.push(lsn);
    return lsn;
  }

  /**
   * Writes only the first `n` bytes of a record that must span into the next page, then
   * abandons it: the next page is flagged FIRST_IS_OVERWRITE_CONTRECORD and gets an
   * XLOG_OVERWRITE_CONTRECORD record. Returns the abandoned record's LSN.
   */
  abandoned(r: SynthRecord): bigint {
    const bytes = buildRecord(r, this.prev);
    if (Number(this.pos % BigInt(this.pageSize)) === 0) this.pageHeader(0);
    const lsn = this.pos;
    const room = this.pageSize - Number(this.pos % BigInt(this.pageSize));
    if (bytes.length <= room) throw new Error("the abandoned record must cross a page");
    this.place(bytes, room);
    this.overwriteNext = true;
    const md = Buffer.alloc(16);
    md.writeBigUInt64LE(lsn, 0);
    md.writeBigUInt64LE(123456789n, 8);
    this.record({ rmid: 0, info: 0xd0, mainData: md });
    return lsn;
  }

  /** An XLOG_SWITCH record, then zeros to the end of the segment. */
  switchSegment(): bigint {
    const lsn = this.record({ rmid: 0, info: 0x40 });
    const rest = Number(this.pos % BigInt(this.segmentSize));
    if (rest !== 0) {
      const n = this.segmentSize - rest;
      this.ensure(n);
      this.out.fill(0, this.len, this.len + n);
      this.len += n;
    }
    return lsn;
  }

  /** The bytes written so far (ending right after the last record's alignment padding). */
  bytes(): Buffer {
    return Buffer.from(this.out.subarray(0, this.len));
  }
}
