/**
 * Raw access to the bytes of a server's WAL segment files, for tests that check the decoder's
 * view of a record against the server's own tools (`pg_walinspect`): read the bytes at an LSN,
 * skipping page headers, and patch a record's header in place.
 *
 * Deliberately independent of `src/wal` (so a decoder bug cannot hide itself): page size
 * 8192, little-endian, short page header 24 bytes, long (segment-start) header 40 bytes.
 *
 * @module
 */

import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { crc32c } from "@node-rs/crc32";

/**
 * WAL page size (`XLOG_BLCKSZ`) of the servers under test.
 *
 * @example
 * ```ts
 * lsn % BigInt(WAL_PAGE_SIZE) === 0n; // at a page header
 * ```
 */
export const WAL_PAGE_SIZE = 8192;
const SHORT_HEADER = 24;
const LONG_HEADER = 40;
/**
 * Size of `XLogRecord`, the fixed record header.
 *
 * @example
 * ```ts
 * const header = wal.read(lsn, RECORD_HEADER_SIZE); // header[17] is xl_rmid
 * ```
 */
export const RECORD_HEADER_SIZE = 24;

/**
 * Parses PostgreSQL's text form of an LSN (`16/B374D848`).
 *
 * @example
 * ```ts
 * parseLsnText("0/15180E8"); // 0x15180e8n
 * ```
 */
export function parseLsnText(text: string): bigint {
  const m = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(text);
  if (m === null) throw new RangeError(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/**
 * Where a server's WAL lives and how it is cut.
 *
 * @example
 * ```ts
 * const loc: WalLocation = { walDir: srv.walDir, timeline: 1, segmentSize: 16 * 1024 * 1024 };
 * ```
 */
export interface WalLocation {
  readonly walDir: string;
  readonly timeline: number;
  /** `wal_segment_size` in bytes. */
  readonly segmentSize: number;
}

/**
 * The segment file name holding `lsn` (timeline, then the segment number in two 8-digit
 * halves).
 *
 * @example
 * ```ts
 * segmentFileName(1, 16 * 1024 * 1024, 0x15180e8n); // "000000010000000000000001"
 * ```
 */
export function segmentFileName(timeline: number, segmentSize: number, lsn: bigint): string {
  const segno = lsn / BigInt(segmentSize);
  const perId = 0x1_0000_0000n / BigInt(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(timeline)}${hex(segno / perId)}${hex(segno % perId)}`;
}

/**
 * Reads segment files by name, caching open file descriptors; `close()` when done.
 *
 * @example
 * ```ts
 * const wal = new WalFiles({ walDir, timeline: 1, segmentSize: 16 << 20 });
 * const header = wal.read(0x15180e8n, 24);
 * wal.close();
 * ```
 */
export class WalFiles {
  readonly #loc: WalLocation;
  readonly #fds = new Map<string, number>();

  constructor(loc: WalLocation) {
    this.#loc = loc;
  }

  #fd(lsn: bigint, write: boolean): number {
    const name = segmentFileName(this.#loc.timeline, this.#loc.segmentSize, lsn);
    const key = `${name}:${write ? "w" : "r"}`;
    let fd = this.#fds.get(key);
    if (fd === undefined) {
      fd = openSync(join(this.#loc.walDir, name), write ? "r+" : "r");
      this.#fds.set(key, fd);
    }
    return fd;
  }

  /** `n` bytes of record data from `lsn` on, skipping the page headers between. */
  read(lsn: bigint, n: number): Buffer {
    const out = Buffer.alloc(n);
    let pos = lsn;
    let done = 0;
    const seg = BigInt(this.#loc.segmentSize);
    while (done < n) {
      const inPage = Number(pos % BigInt(WAL_PAGE_SIZE));
      if (inPage === 0) {
        pos += BigInt(pos % seg === 0n ? LONG_HEADER : SHORT_HEADER);
        continue;
      }
      const take = Math.min(n - done, WAL_PAGE_SIZE - inPage);
      const got = readSync(this.#fd(pos, false), out, done, take, Number(pos % seg));
      if (got !== take) throw new Error(`short read at ${pos.toString(16)}: ${got} of ${take}`);
      done += take;
      pos += BigInt(take);
    }
    return out;
  }

  /**
   * Rewrites the header of the record at `lsn` with a new `xl_rmid` and `xl_info` and a
   * matching CRC. The whole record must lie on one page (returns false otherwise, changing
   * nothing).
   */
  patchRecord(lsn: bigint, rmid: number, info: number): boolean {
    const header = this.read(lsn, RECORD_HEADER_SIZE);
    const totLen = header.readUInt32LE(0);
    const inPage = Number(lsn % BigInt(WAL_PAGE_SIZE));
    if (inPage + totLen > WAL_PAGE_SIZE) return false;
    const rec = this.read(lsn, totLen);
    rec[16] = info;
    rec[17] = rmid;
    rec.writeUInt32LE(crc32c(rec.subarray(0, 20), crc32c(rec.subarray(RECORD_HEADER_SIZE))), 20);
    const fd = this.#fd(lsn, true);
    const at = Number(lsn % BigInt(this.#loc.segmentSize));
    if (writeSync(fd, rec, 0, totLen, at) !== totLen) throw new Error("short write");
    return true;
  }

  close(): void {
    for (const fd of this.#fds.values()) closeSync(fd);
    this.#fds.clear();
  }
}
