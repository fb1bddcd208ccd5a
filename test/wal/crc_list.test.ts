/**
 * CRCs computed ahead of decoding (`readWithRecordCrcs`, the addon's `listRecordCrcs`): what is
 * listed, what the decoder accepts with a chunk, and the errors of the read.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { crcListParts } from "../../src/wal/crc_list.js";
import {
  nativeCrc,
  RecordCrcList,
  readWithRecordCrcs,
  recordCrc32c,
  WalDecoder,
} from "../../src/wal/index.js";
import { WalBuilder } from "../support/walbuilder.js";

const native = nativeCrc();
const PAGE = 8192;

/** Two 1 MiB segments of synthetic WAL: small records, images spanning pages, a switch. */
function buildWal(): { bytes: Buffer; lsns: bigint[] } {
  const w = new WalBuilder({ startLsn: 1n << 20n, segmentSize: 1 << 20, prev: (1n << 20n) - 64n });
  let i = 0;
  while (w.pos < (1n << 20n) + 900_000n) {
    const big = i % 37 === 0;
    w.record({
      rmid: 10,
      info: 0,
      xid: 700 + i,
      blocks: [
        {
          id: 0,
          rel: { spc: 1663, db: 5, rel: 16384 },
          blk: i,
          ...(big
            ? { image: { bytes: randomBytes(PAGE - 200), holeOffset: 100, bimgInfo: 0x01 } }
            : { data: randomBytes(20 + (i % 90)) }),
        },
      ],
      mainData: randomBytes(3 + (i % 11)),
    });
    i++;
  }
  w.switchSegment();
  while (w.pos < (2n << 20n) + 200_000n) w.record({ rmid: 1, info: 0, mainData: randomBytes(40) });
  return { bytes: w.bytes(), lsns: w.lsns };
}

/**
 * The bytes of the record at `off` of `chunk` (which starts at LSN `chunkLsn`, a page start),
 * put together from its pieces after the page headers it continues over, or undefined when it
 * does not end inside the chunk.
 */
function assemble(chunk: Buffer, chunkLsn: bigint, off: number): Buffer | undefined {
  const tot = chunk.readUInt32LE(off);
  const pieces: Buffer[] = [];
  let got = 0;
  let pos = off;
  while (got < tot) {
    const lsn = chunkLsn + BigInt(pos);
    if (lsn % BigInt(PAGE) === 0n) pos += lsn % BigInt(1 << 20) === 0n ? 40 : 24;
    const room = PAGE - Number((chunkLsn + BigInt(pos)) % BigInt(PAGE));
    const n = Math.min(room, tot - got);
    if (pos + n > chunk.length) return undefined;
    pieces.push(chunk.subarray(pos, pos + n));
    got += n;
    pos += n;
  }
  return Buffer.concat(pieces);
}

describe("CRCs computed ahead of decoding", () => {
  const { bytes, lsns } = buildWal();
  let dir: string;
  let fd: number;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "tideline-crclist-"));
    writeFileSync(join(dir, "wal"), bytes);
    fd = openSync(join(dir, "wal"), "r");
  });
  after(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists every record lying whole in the chunk, with the CRC of its assembled bytes", async (t) => {
    if (native === undefined) return t.skip("addon not built");
    const start = 1n << 20n;
    let spanning = 0;
    for (const [pos, size] of [
      [0, 1 << 20],
      [1 << 20, 1 << 20],
      [40 * PAGE, 64 * 1024],
      [3 * PAGE, PAGE],
    ] as const) {
      const { bytes: chunk, crcs } = await readWithRecordCrcs(
        fd,
        pos,
        Buffer.allocUnsafeSlow(size),
      );
      assert.ok(crcs !== undefined);
      assert.equal(crcs.chunk, chunk);
      const expected: number[] = [];
      const expectedCrcs: number[] = [];
      for (const lsn of lsns) {
        const off = Number(lsn - start) - pos;
        if (off < 0 || off + 24 > chunk.length) continue;
        const record = assemble(chunk, start + BigInt(pos), off);
        if (record === undefined) continue;
        expected.push(off);
        expectedCrcs.push(recordCrc32c(record, 0, record.length));
        if (record.length + Number(lsn % BigInt(PAGE)) > PAGE) spanning++;
      }
      const parts = crcListParts(crcs);
      assert.deepEqual(
        Array.from(parts.offsets.subarray(0, crcs.count)),
        expected,
        `chunk at ${pos}`,
      );
      assert.deepEqual(
        Array.from(parts.crcs.subarray(0, crcs.count), (c) => c >>> 0),
        expectedCrcs,
        `CRCs of the chunk at ${pos}`,
      );
      assert.ok(expected.length > 0, `records listed in the chunk at ${pos}`);
    }
    assert.ok(spanning > 10, `${spanning} records continued on later pages were listed`);
  });

  it("reads short at the end of the file, and reuses a list's arrays when asked", async () => {
    const at = Math.floor(bytes.length / PAGE) * PAGE - 2 * PAGE;
    const end = await readWithRecordCrcs(fd, at, Buffer.allocUnsafeSlow(65536));
    assert.equal(end.bytes.length, bytes.length - at);
    assert.ok(end.bytes.equals(bytes.subarray(at)));
    const first = await readWithRecordCrcs(fd, 0, Buffer.allocUnsafeSlow(65536));
    const again = await readWithRecordCrcs(
      fd,
      65536,
      Buffer.allocUnsafeSlow(65536),
      65536,
      PAGE,
      first.crcs,
    );
    assert.ok(again.bytes.equals(bytes.subarray(65536, 131072)));
    if (native !== undefined) {
      assert.equal(
        crcListParts(again.crcs!).offsets,
        crcListParts(first.crcs!).offsets,
        "the arrays were reused",
      );
      assert.notEqual(again.crcs, first.crcs);
    }
    // Not a WAL page: nothing listed.
    const junk = join(dir, "junk");
    writeFileSync(junk, randomBytes(PAGE));
    const jfd = openSync(junk, "r");
    try {
      assert.equal((await readWithRecordCrcs(jfd, 0, Buffer.alloc(PAGE))).crcs, undefined);
    } finally {
      closeSync(jfd);
    }
  });

  it("rejects with the system's error, and refuses bad arguments", async () => {
    const closed = openSync(join(dir, "wal"), "r");
    closeSync(closed);
    await assert.rejects(readWithRecordCrcs(closed, 0, Buffer.alloc(PAGE)), { code: "EBADF" });
    const dirFd = openSync(dir, "r");
    try {
      await assert.rejects(readWithRecordCrcs(dirFd, 0, Buffer.alloc(PAGE)), { code: "EISDIR" });
    } finally {
      closeSync(dirFd);
    }
    assert.throws(() => readWithRecordCrcs(fd, 0, Buffer.alloc(PAGE), PAGE + 1), {
      name: "RangeError",
      message: /length must be an integer in \[0, 8192\], got 8193/,
    });
    assert.throws(() => readWithRecordCrcs(fd, 0, Buffer.alloc(PAGE), PAGE, 1000), RangeError);
    assert.throws(() => readWithRecordCrcs(fd, 100, Buffer.alloc(PAGE)), {
      name: "RangeError",
      message: /position must be a non-negative multiple of the page size 8192, got 100/,
    });
  });

  it("is taken by the decoder only with the chunk it was made for", async (t) => {
    if (native === undefined) return t.skip("addon not built");
    const a = await readWithRecordCrcs(fd, 0, Buffer.allocUnsafeSlow(65536));
    const b = await readWithRecordCrcs(fd, 65536, Buffer.allocUnsafeSlow(65536));
    const dec = new WalDecoder({ startLsn: 1n << 20n });
    assert.throws(() => dec.push(a.bytes, b.crcs), {
      name: "TypeError",
      message: /crcs must be the list readWithRecordCrcs\(\) made for this chunk/,
    });
    // A look-alike object is refused as well, and no list can be made or changed from outside:
    // the decoder trusts the CRCs in it.
    const forged = Object.create(RecordCrcList.prototype, {
      chunk: { value: a.bytes },
      pageSize: { value: PAGE },
      count: { value: a.crcs!.count },
    }) as RecordCrcList;
    assert.throws(() => dec.push(a.bytes, forged), TypeError);
    assert.throws(
      () =>
        new (RecordCrcList as unknown as new (...args: unknown[]) => RecordCrcList)(
          Symbol("RecordCrcList.make"),
          a.bytes,
          PAGE,
          new Int32Array(1),
          new Int32Array(1),
          new Int32Array(2),
        ),
      { name: "TypeError", message: /made by readWithRecordCrcs\(\) only/ },
    );
    assert.equal(Object.keys(a.crcs!).includes("offsets"), false);
    dec.push(a.bytes, a.crcs);
    dec.push(b.bytes, b.crcs);
    let n = 0;
    for (const _ of dec.records()) n++;
    assert.ok(n > 50);
  });
});

describe("CRC lists and the decoder's page size", () => {
  it("are not used by a decoder of another page size (a record that looks spanning at 8 KiB)", async (t) => {
    if (native === undefined) return t.skip("addon not built");
    // 16 KiB pages; a record around the 8 KiB mark whose main data holds what looks like a
    // page header there: a walk with 8 KiB pages takes it for a record continued on the next
    // page and lists a CRC over the wrong bytes.
    const big = 16384;
    const w = new WalBuilder({
      startLsn: 1n << 20n,
      segmentSize: 1 << 20,
      pageSize: big,
      prev: (1n << 20n) - 64n,
    });
    while (Number(w.pos - (1n << 20n)) < 8192 - 150)
      w.record({ rmid: 1, info: 0, mainData: randomBytes(60) });
    const o = Number(w.pos - (1n << 20n));
    const len = 400;
    const tot = 24 + 5 + len; // header, XLR_BLOCK_ID_DATA_LONG with its length, main data
    const data = randomBytes(len);
    const k = 8192 - (o + 29);
    assert.ok(k >= 0 && k + 24 <= len, `fake header at ${k} of ${len}`);
    data.writeUInt16LE(0xd110, k); // the magic of the first page
    data.writeUInt16LE(0x0001, k + 2); // XLP_FIRST_IS_CONTRECORD
    data.writeUInt32LE(tot - (8192 - o), k + 16); // the "remaining length" the walk expects
    const fake = w.record({ rmid: 1, info: 0, mainData: data });
    for (let i = 0; i < 20; i++) w.record({ rmid: 1, info: 0, mainData: randomBytes(60) });
    const wal = w.bytes();
    const file = join(mkdtempSync(join(tmpdir(), "tideline-crclist-page-")), "wal");
    writeFileSync(file, wal);
    const fd = openSync(file, "r");
    try {
      const decode = (crcs?: RecordCrcList) => {
        const dec = new WalDecoder({ startLsn: 1n << 20n, pageSize: big, segmentSize: 1 << 20 });
        dec.push(chunk, crcs);
        dec.end();
        const lsns: bigint[] = [];
        let error: string | undefined;
        try {
          for (const r of dec.records()) lsns.push(r.lsn);
        } catch (e) {
          error = (e as Error).message;
        }
        return { lsns, error };
      };
      // Read with the default (8 KiB) page size: the list is walked with the wrong geometry.
      const { bytes: chunk, crcs } = await readWithRecordCrcs(
        fd,
        0,
        Buffer.allocUnsafeSlow(wal.length),
      );
      assert.ok(crcs !== undefined);
      assert.ok(
        Array.from(crcListParts(crcs).offsets.subarray(0, crcs.count)).includes(o),
        "the walk listed the record at the 8 KiB mark",
      );
      const without = decode();
      assert.equal(without.error, undefined);
      assert.ok(without.lsns.includes(fake));
      assert.deepEqual(decode(crcs), without);
    } finally {
      closeSync(fd);
      rmSync(dirname(file), { recursive: true, force: true });
    }
  });
});
