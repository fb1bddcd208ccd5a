import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  formatLsn,
  parseLsn,
  WalBlockRefError,
  WalCrcMismatchError,
  WalDecodeError,
  WalDecoder,
  type WalDecoderOptions,
  WalPageHeaderError,
  WalRecordLengthError,
} from "../../src/wal/index.js";
import { buildRecord, fixCrc, WalBuilder } from "../support/walbuilder.js";

const MiB = 1024 * 1024;

interface Seen {
  lsn: string;
  end: string;
  prev: string;
  rmid: number;
  info: number;
  xid: number;
  totLen: number;
  fpiLen: number;
  mainData: string;
  blocks: string;
}

function summarize(dec: WalDecoder, out: Seen[]): void {
  for (const r of dec.records()) {
    out.push({
      lsn: formatLsn(r.lsn),
      end: formatLsn(r.end),
      prev: formatLsn(r.prev),
      rmid: r.rmid,
      info: r.info,
      xid: r.xid,
      totLen: r.totLen,
      fpiLen: r.fpiLen,
      mainData: r.mainData().toString("hex"),
      blocks: r.blocks
        .map(
          (b) =>
            `${b.id}:${b.spc}/${b.db}/${b.rel}:${b.fork}:${b.blk}:${b.hasImage ? `img${b.imageLen}/${b.holeOffset}/${b.holeLength}/${b.compression}` : ""}:${r.blockData(b).toString("hex")}`,
        )
        .join(","),
    });
  }
}

/** Decodes `bytes` pushed in pieces of the given sizes (cycled). */
function decodeChunked(opts: WalDecoderOptions, bytes: Buffer, sizes: number[]): Seen[] {
  const dec = new WalDecoder(opts);
  const out: Seen[] = [];
  let i = 0;
  let k = 0;
  while (i < bytes.length) {
    const n = Math.max(1, sizes[k++ % sizes.length] ?? 1);
    dec.push(bytes.subarray(i, i + n));
    i += n;
    summarize(dec, out);
  }
  dec.end();
  summarize(dec, out);
  assert.equal(dec.state, "end");
  return out;
}

function decodeAll(opts: WalDecoderOptions, bytes: Buffer): Seen[] {
  return decodeChunked(opts, bytes, [bytes.length]);
}

function expectError(
  opts: WalDecoderOptions,
  bytes: Buffer,
  check: (e: WalDecodeError) => void,
  end = true,
): Seen[] {
  const dec = new WalDecoder(opts);
  const out: Seen[] = [];
  dec.push(bytes);
  if (end) dec.end();
  let caught: unknown;
  try {
    summarize(dec, out);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof WalDecodeError, `expected a WalDecodeError, got ${String(caught)}`);
  check(caught);
  assert.equal(dec.state, "failed");
  assert.throws(
    () => dec.next(),
    (e: unknown) => e === caught,
    "next() rethrows the same error",
  );
  return out;
}

const payload = (n: number, seed: number) => {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};

/** A mixed sequence of records: small, multi-page, with blocks, images, origin, toplevel xid. */
function fillMixed(w: WalBuilder, count: number, seed = 1): void {
  for (let i = 0; i < count; i++) {
    const kind = (i * 7 + seed) % 6;
    if (kind === 0)
      w.record({ rmid: 10, info: 0x00, xid: 700 + i, mainData: payload(3 + (i % 40), i) });
    else if (kind === 1)
      w.record({
        rmid: 11,
        info: 0x10,
        xid: 700 + i,
        blocks: [
          { id: 0, rel: { spc: 1663, db: 5, rel: 16384 + i }, blk: i, data: payload(20, i) },
          { id: 1, rel: { spc: 1663, db: 5, rel: 16384 + i }, blk: i + 1, sameRel: true, fork: 2 },
        ],
        mainData: payload(8, i + 1),
      });
    else if (kind === 2)
      w.record({
        rmid: 10,
        info: 0x20,
        xid: 700 + i,
        blocks: [
          {
            id: 0,
            rel: { spc: 1663, db: 5, rel: 2600 },
            blk: 7,
            image: { bytes: payload(8192 - 3000, i), holeOffset: 100, bimgInfo: 0x03 },
          },
        ],
        mainData: payload(12, i),
      });
    else if (kind === 3) w.record({ rmid: 21, info: 0x00, mainData: payload(20000 + i, i) });
    else if (kind === 4)
      w.record({
        rmid: 10,
        info: 0x00,
        xid: 900 + i,
        origin: 3,
        toplevelXid: 899,
        blocks: [
          {
            id: 3,
            rel: { spc: 1663, db: 5, rel: 1259 },
            blk: 2,
            image: { bytes: payload(700, i), holeOffset: 64, bimgInfo: 0x13, holeLength: 2000 },
            data: payload(5, i),
          },
        ],
      });
    else w.record({ rmid: 1, info: 0x00, xid: 700 + i, mainData: payload(300, i) });
  }
}

describe("WalDecoder on synthetic WAL", () => {
  it("decodes records across pages, a segment boundary and the 4 GiB boundary", () => {
    for (const hi of [0n, 0x1234n]) {
      const start = (hi << 32n) | 0xfff0_0000n; // last 1 MiB segment below the boundary
      const w = new WalBuilder({ startLsn: start, segmentSize: MiB, prev: start - 0x100n });
      fillMixed(w, 600);
      const bytes = w.bytes();
      assert.ok(
        w.pos > ((hi + 1n) << 32n) + BigInt(MiB / 2),
        "the WAL crosses into the next 4 GiB",
      );
      const seen = decodeAll({ startLsn: start, segmentSize: MiB }, bytes);
      assert.deepEqual(
        seen.map((s) => s.lsn),
        w.lsns.map(formatLsn),
      );
      assert.ok(seen.some((s) => s.lsn.startsWith(`${(hi + 1n).toString(16).toUpperCase()}/`)));
      // Each record's end is the next record's start.
      for (let i = 0; i + 1 < seen.length; i++) {
        const end = parseLsn(seen[i]!.end);
        const next = parseLsn(seen[i + 1]!.lsn);
        assert.ok(
          end === next || (next - end < 41n && next % 8192n <= 40n),
          `${seen[i]!.end} vs ${seen[i + 1]!.lsn}`,
        );
      }
      // Segment size learned from the long header when not given.
      assert.deepEqual(decodeAll({ startLsn: start }, bytes), seen);
    }
  });

  it("gives identical records whatever the chunking (fast-check)", () => {
    const start = 0xfff0_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB, prev: 0xffef_ff00n });
    fillMixed(w, 120, 3);
    const bytes = w.bytes();
    const reference = decodeAll({ startLsn: start, segmentSize: MiB }, bytes);
    assert.equal(reference.length, 120);
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.integer({ min: 1, max: 64 }),
            fc.integer({ min: 1, max: 9000 }),
            fc.integer({ min: 1, max: 200 * 1024 }),
          ),
          {
            minLength: 1,
            maxLength: 40,
          },
        ),
        (sizes) => {
          assert.deepEqual(
            decodeChunked({ startLsn: start, segmentSize: MiB }, bytes, sizes),
            reference,
          );
          assert.deepEqual(
            decodeChunked({ startLsn: start, segmentSize: MiB, nativeCrc: false }, bytes, sizes),
            reference,
          );
        },
      ),
      { numRuns: 60, seed: 20261126 },
    );
    // One byte at a time.
    const k = w.lsns.findLastIndex((l) => l - start <= 300_000n);
    const cut = Number(w.lsns[k]! - start);
    assert.deepEqual(
      decodeChunked({ startLsn: start, segmentSize: MiB }, bytes.subarray(0, cut), [1]),
      reference.slice(0, k),
    );
  });

  it("decodes a Buffer pushed again with new contents once consumed (as waldump reads files)", () => {
    const start = 0x500_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 400, 7);
    const bytes = w.bytes();
    const reference = decodeAll({ startLsn: start, segmentSize: MiB, nativeCrc: false }, bytes);
    for (const size of [8192, 3 * 8192, 65536]) {
      const dec = new WalDecoder({ startLsn: start, segmentSize: MiB });
      const out: Seen[] = [];
      let chunk = Buffer.alloc(size);
      let reused = 0;
      for (let i = 0; i < bytes.length; i += size) {
        // Only a consumed buffer may be written again; otherwise take a new one.
        if (dec.bufferedBytes === 0) reused++;
        else chunk = Buffer.alloc(size);
        const n = bytes.copy(chunk, 0, i, i + size);
        dec.push(n === size ? chunk : chunk.subarray(0, n));
        summarize(dec, out);
      }
      dec.end();
      summarize(dec, out);
      assert.deepEqual(out, reference, `chunks of ${size}`);
      assert.ok(reused > bytes.length / size / 2, `reused ${reused} times`);
    }
  });

  it("checks records more than 2 GiB into one pushed chunk (beyond the batch CRC's offsets)", () => {
    // Two 1 GiB segments ended by XLOG_SWITCH (zeros after it: the buffer's pages are only
    // touched where written), then records beyond 2 GiB.
    const SEG = 1 << 30;
    const parts: Buffer[] = [];
    let prev = 0n;
    for (let k = 0; k < 2; k++) {
      const w = new WalBuilder({ startLsn: BigInt(k * SEG), segmentSize: SEG, prev });
      prev = w.record({ rmid: 0, info: 0x40 }); // XLOG_SWITCH; its zeros are the big buffer's
      parts.push(w.bytes());
    }
    const w = new WalBuilder({ startLsn: BigInt(2 * SEG), segmentSize: SEG, prev });
    fillMixed(w, 60, 9);
    const tail = w.bytes();
    const big = Buffer.alloc(2 * SEG + tail.length);
    parts[0]!.copy(big, 0);
    parts[1]!.copy(big, SEG);
    tail.copy(big, 2 * SEG);
    const run = (nativeCrc: boolean) => {
      const dec = new WalDecoder({ startLsn: 0n, segmentSize: SEG, nativeCrc });
      dec.push(big);
      dec.end();
      const out: Seen[] = [];
      summarize(dec, out);
      assert.equal(dec.state, "end");
      return out;
    };
    const native = run(true);
    assert.equal(native.length, 62);
    assert.deepEqual(native, run(false));
    // And a damaged one there is still caught.
    big[2 * SEG + 200]! ^= 1;
    assert.throws(() => run(true), WalDecodeError);
  });

  it("starts mid-page at a record, and at a page that begins with a continuation", () => {
    const start = 0x300_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 60);
    const bytes = w.bytes();
    const all = decodeAll({ startLsn: start, segmentSize: MiB }, bytes);
    // Mid-page record starts.
    for (const i of [1, 7, 33]) {
      const lsn = parseLsn(all[i]!.lsn);
      const from = decodeAll(
        { startLsn: lsn, segmentSize: MiB },
        bytes.subarray(Number(lsn - start)),
      );
      assert.deepEqual(from, all.slice(i));
    }
    // Page starts: the first record is the first that starts on or after the page, after
    // skipping the continuation (possibly over several pages), as pg_waldump does.
    for (let page = 1; page < bytes.length / 8192; page += 3) {
      const pageLsn = start + BigInt(page * 8192);
      const dec = new WalDecoder({ startLsn: pageLsn, segmentSize: MiB });
      const out: Seen[] = [];
      dec.push(bytes.subarray(page * 8192));
      dec.end();
      summarize(dec, out);
      const expected = all.filter((r) => parseLsn(r.lsn) >= pageLsn);
      assert.deepEqual(out, expected, `from ${formatLsn(pageLsn)}`);
    }
  });

  it("skips the rest of the segment after XLOG_SWITCH", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 5);
    const sw = w.switchSegment();
    fillMixed(w, 5, 2);
    const seen = decodeChunked(
      { startLsn: start, segmentSize: MiB },
      w.bytes(),
      [5000, 77, 100_000],
    );
    const s = seen.find((r) => r.lsn === formatLsn(sw));
    assert.ok(s);
    assert.equal(s.end, formatLsn(start + BigInt(MiB)));
    assert.equal(seen[6]?.lsn, formatLsn(start + BigInt(MiB) + 40n));
    assert.equal(seen[6]?.prev, formatLsn(sw));
    assert.equal(seen.length, 11);
  });

  it("drops a record abandoned with FIRST_IS_OVERWRITE_CONTRECORD", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 3);
    const before = w.prev;
    const lost = w.abandoned({ rmid: 21, info: 0, mainData: payload(30000, 9) });
    fillMixed(w, 3, 4);
    const dec = new WalDecoder({ startLsn: start, segmentSize: MiB });
    dec.push(w.bytes());
    dec.end();
    const out: Seen[] = [];
    summarize(dec, out);
    assert.equal(dec.state, "end");
    assert.deepEqual(dec.abandonedRecords, [lost]);
    assert.ok(!out.some((r) => r.lsn === formatLsn(lost)));
    const ow = out[3]!;
    assert.equal(ow.rmid, 0);
    assert.equal(ow.info, 0xd0);
    assert.equal(ow.prev, formatLsn(before));
    assert.equal(parseLsn(ow.lsn) % 8192n, 24n);
    assert.equal(out.length, 7);
  });

  it("rejects an abandoned record without its XLOG_OVERWRITE_CONTRECORD", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 3);
    const lost = w.abandoned({ rmid: 21, info: 0, mainData: payload(30000, 9) });
    const bytes = w.bytes();
    const owLsn = w.lsns[w.lsns.length - 1]!;
    const at = Number(owLsn - start);
    bytes.writeBigUInt64LE(lost + 8n, at + 24 + 2); // main data: wrong overwritten LSN
    fixCrc(bytes, at);
    expectError({ startLsn: start, segmentSize: MiB }, bytes, (e) => {
      assert.equal(e.code, "bad-overwrite-contrecord");
      assert.equal(e.lsn, owLsn);
      assert.match(e.message, new RegExp(formatLsn(lost)));
    });
  });

  it("reports need-input, end, and truncation distinctly", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 10);
    const bytes = w.bytes();
    const big = w.lsns[2]!; // kind 3: a 20 KB record
    const cut = Number(big - start) + 9000;
    const dec = new WalDecoder({ startLsn: start, segmentSize: MiB });
    dec.push(bytes.subarray(0, cut));
    const out: Seen[] = [];
    summarize(dec, out);
    assert.equal(out.length, 2);
    assert.equal(dec.state, "need-input");
    assert.equal(dec.next(), undefined);
    dec.end();
    assert.throws(
      () => dec.next(),
      (e: unknown) =>
        e instanceof WalDecodeError &&
        e.code === "truncated" &&
        e.endOfWal &&
        e.recordLsn === big &&
        e.message.includes(formatLsn(big)),
    );
    // Ending exactly after a record is a clean end.
    const clean = new WalDecoder({ startLsn: start, segmentSize: MiB });
    clean.push(bytes.subarray(0, Number(w.lsns[3]! - start)));
    clean.end();
    const got: Seen[] = [];
    summarize(clean, got);
    assert.equal(got.length, 3);
    assert.equal(clean.decodedUpTo, w.lsns[3]);
    assert.equal(clean.state, "end");
  });

  it("stops at zeros as the end of WAL", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 4);
    const end = w.pos;
    const bytes = Buffer.concat([w.bytes(), Buffer.alloc(3 * 8192)]);
    const out = expectError({ startLsn: start, segmentSize: MiB }, bytes, (e) => {
      assert.ok(e instanceof WalRecordLengthError);
      assert.equal(e.code, "bad-length");
      assert.equal(e.endOfWal, true);
      assert.equal(e.lsn, end);
      assert.equal(e.totalLength, 0);
      assert.match(e.message, new RegExp(`at ${formatLsn(end)}: expected at least 24, got 0`));
    });
    assert.equal(out.length, 4);
  });

  it("names the LSN of a CRC failure, a bad magic, a bad pageaddr and a bad block reference", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 40);
    const good = w.bytes();
    const opts = { startLsn: start, segmentSize: MiB };

    const target = w.lsns[12]!;
    const flipped = Buffer.from(good);
    flipped[Number(target - start) + 30]! ^= 0x10;
    const before = expectError(opts, flipped, (e) => {
      assert.ok(e instanceof WalCrcMismatchError);
      assert.equal(e.code, "crc-mismatch");
      assert.equal(e.lsn, target);
      assert.notEqual(e.expected, e.actual);
      assert.match(e.message, new RegExp(`record at ${formatLsn(target)}`));
    });
    assert.equal(before.length, 12);

    const magic = Buffer.from(good);
    magic.writeUInt16LE(0xd111, 3 * 8192);
    expectError(opts, magic, (e) => {
      assert.ok(e instanceof WalPageHeaderError);
      assert.equal(e.code, "bad-magic");
      assert.equal(e.lsn, start + 3n * 8192n);
      assert.equal(e.found, 0xd111);
      assert.match(
        e.message,
        /invalid magic number D111 in WAL segment 000000010000000000000010, LSN 0\/1006000, offset 24576: expected D110/,
      );
    });

    const addr = Buffer.from(good);
    addr.writeBigUInt64LE(start + 5n * 8192n + (1n << 32n), 5 * 8192 + 8);
    expectError(opts, addr, (e) => {
      assert.equal(e.code, "page-address");
      assert.equal(e.lsn, start + 5n * 8192n);
      assert.equal(e.endOfWal, false);
      assert.match(e.message, /unexpected pageaddr 1\/100A000 .*expected 0\/100A000/);
    });

    const flags = Buffer.from(good);
    flags.writeUInt16LE(0x21, 4 * 8192 + 2);
    expectError(opts, flags, (e) => {
      assert.equal(e.code, "bad-header");
      assert.equal(e.lsn, start + 4n * 8192n);
    });

    const blockRec = w.lsns.find((_, i) => (i * 7 + 1) % 6 === 1)!; // two blocks, ids 0 and 1
    const bad = Buffer.from(good);
    const o = Number(blockRec - start);
    // Make block 1's id 0: out of order. Block 0 header: 4 + 12 + 4 bytes, then block 1.
    assert.equal(bad[o + 24 + 20], 1);
    bad[o + 24 + 20] = 0;
    fixCrc(bad, o);
    expectError(opts, bad, (e) => {
      assert.ok(e instanceof WalBlockRefError);
      assert.equal(e.code, "bad-block-ref");
      assert.equal(e.lsn, blockRec);
      assert.match(e.message, new RegExp(`out-of-order block_id 0 at ${formatLsn(blockRec)}`));
    });

    const prevLink = Buffer.from(good);
    const o2 = Number(w.lsns[20]! - start);
    prevLink.writeBigUInt64LE(w.lsns[18]!, o2 + 8);
    fixCrc(prevLink, o2);
    expectError(opts, prevLink, (e) => {
      assert.equal(e.code, "bad-prev-link");
      assert.equal(e.lsn, w.lsns[20]);
    });
  });

  it("reports timeline regressions, stray continuation flags, bad offsets and rmgr ids", () => {
    const start = 0x100_0000n;
    const opts = { startLsn: start, segmentSize: MiB };
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB, timeline: 3 });
    fillMixed(w, 40);
    const good = w.bytes();

    const tli = Buffer.from(good);
    tli.writeUInt32LE(2, 6 * 8192 + 4);
    expectError(opts, tli, (e) => {
      assert.equal(e.code, "timeline");
      assert.equal(e.lsn, start + 6n * 8192n);
      assert.match(e.message, /out-of-sequence timeline ID 2 \(after 3\)/);
    });

    // A page that follows a record ending exactly at the page end must not claim a continuation.
    const w2 = new WalBuilder({ startLsn: start, segmentSize: MiB });
    w2.record({ rmid: 21, info: 0, mainData: payload(8192 - 40 - 24 - 5, 1) });
    assert.equal(w2.pos, start + 8192n);
    fillMixed(w2, 3);
    const cont = w2.bytes();
    cont.writeUInt16LE(cont.readUInt16LE(8192 + 2) | 1, 8192 + 2);
    cont.writeUInt32LE(100, 8192 + 16);
    expectError(opts, cont, (e) => {
      assert.equal(e.code, "unexpected-contrecord");
      assert.equal(e.lsn, start + 8192n + 24n);
    });

    expectError({ startLsn: start + 16n, segmentSize: MiB }, good.subarray(16), (e) => {
      assert.equal(e.code, "bad-record-offset");
      assert.match(e.message, /expected at least 40, got 16/);
    });

    const rmgr = Buffer.from(good);
    const o = Number(w.lsns[5]! - start);
    rmgr[o + 17] = 77;
    fixCrc(rmgr, o);
    expectError(opts, rmgr, (e) => {
      assert.equal(e.code, "bad-rmgr");
      assert.equal(e.lsn, w.lsns[5]);
      assert.match(e.message, /invalid resource manager ID 77/);
    });
  });

  it("rejects a record claiming 1 GB without allocating it", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    fillMixed(w, 5);
    const bytes = w.bytes();
    const target = w.lsns[2]!;
    const o = Number(target - start);
    bytes.writeUInt32LE(0x4000_0000, o);
    fixCrc(bytes, o); // the CRC cannot help: the length is checked first
    const before = process.memoryUsage().arrayBuffers;
    expectError({ startLsn: start, segmentSize: MiB }, bytes, (e) => {
      assert.ok(e instanceof WalRecordLengthError);
      assert.equal(e.code, "bad-length");
      assert.equal(e.endOfWal, false);
      assert.equal(e.lsn, target);
      assert.equal(e.totalLength, 0x4000_0000);
      assert.match(
        e.message,
        new RegExp(`record length 1073741824 at ${formatLsn(target)} too long`),
      );
    });
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * MiB);

    // A claimed length below the limit but longer than the data: the continuation check fails.
    const bytes2 = w.bytes();
    bytes2.writeUInt32LE(900 * MiB, o);
    expectError({ startLsn: start, segmentSize: MiB }, bytes2, (e) => {
      assert.equal(e.code, "missing-contrecord");
      assert.equal(e.recordLsn, target);
    });
  });

  it("checks long page headers against the options", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB, systemId: 42n });
    fillMixed(w, 3);
    const bytes = w.bytes();
    expectError({ startLsn: start, segmentSize: MiB, expectedSystemId: 43n }, bytes, (e) => {
      assert.equal(e.code, "bad-header");
      assert.match(e.message, /system identifier is 42, expected 43/);
    });
    expectError({ startLsn: start, segmentSize: 2 * MiB }, bytes, (e) => {
      assert.equal(e.code, "bad-header");
      assert.match(e.message, /segment size in page header is 1048576, expected 2097152/);
    });
    expectError({ startLsn: start, segmentSize: MiB, majorVersion: 16 }, bytes, (e) => {
      assert.equal(e.code, "bad-magic");
      assert.match(e.message, /expected D113 \(PostgreSQL 16\), found PostgreSQL 15's/);
    });
    for (const [magic, v] of [
      [0xd113, 16],
      [0xd116, 17],
      [0xd118, 18],
    ] as const) {
      const wv = new WalBuilder({ startLsn: start, segmentSize: MiB, magic });
      fillMixed(wv, 10);
      const dec = new WalDecoder({ startLsn: start });
      dec.push(wv.bytes());
      dec.end();
      assert.equal([...dec].length, 10);
      assert.equal(dec.majorVersion, v);
      assert.equal(dec.segmentSize, MiB);
      assert.equal(dec.systemId, wv.systemId);
    }
  });

  it("starts mid-segment in a cluster with large segments without being told their size", () => {
    const seg = 64 * MiB;
    const start = 0x400_0000n; // a 64 MiB segment start
    const w = new WalBuilder({ startLsn: start, segmentSize: seg });
    fillMixed(w, 5000);
    const bytes = w.bytes();
    assert.ok(bytes.length > 16 * MiB + 8192);
    const all = decodeAll({ startLsn: start }, bytes);
    // 0/5000000 would start a segment if segments were 16 MiB: it has a short header here.
    const from = 0x500_0000n;
    const tail = decodeAll({ startLsn: from }, bytes.subarray(Number(from - start)));
    assert.deepEqual(
      tail,
      all.filter((r) => parseLsn(r.lsn) >= from),
    );
    assert.equal(all.length, 5000);
  });

  it("never crashes or hangs on damaged input: records or a WalDecodeError (fast-check)", () => {
    const start = 0xfff0_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB, prev: 0xffef_ff00n });
    fillMixed(w, 150, 5);
    w.switchSegment();
    fillMixed(w, 40, 6);
    const good = w.bytes();
    const reference = decodeAll({ startLsn: start, segmentSize: MiB }, good);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        (flips, sizes, truncate) => {
          const bad = Buffer.from(good);
          for (const [at, x] of flips) bad[at]! ^= x;
          const input = truncate ? bad.subarray(0, flips[0]![0] + 1) : bad;
          const run = (nativeCrc: boolean) => {
            const dec = new WalDecoder({ startLsn: start, segmentSize: MiB, nativeCrc });
            const out: Seen[] = [];
            let error: WalDecodeError | undefined;
            try {
              let i = 0;
              let k = 0;
              while (i < input.length) {
                const n = sizes[k++ % sizes.length]!;
                dec.push(input.subarray(i, i + n));
                i += n;
                summarize(dec, out);
              }
              dec.end();
              summarize(dec, out);
            } catch (e) {
              if (!(e instanceof WalDecodeError)) throw e;
              assert.match(e.message, /[0-9A-F]+\/[0-9A-F]+/, "the message names an LSN");
              error = e;
            }
            return { out, error: error && `${error.code} ${error.lsn} ${error.message}` };
          };
          const { out, error } = run(true);
          // Whatever was returned before the damage is what undamaged WAL gives.
          const firstFlip = start + BigInt(Math.min(...flips.map(([at]) => at)));
          const clean = reference.filter((r) => parseLsn(r.end) <= firstFlip);
          assert.deepEqual(out.slice(0, clean.length), clean);
          // The native batch CRC (when built) and JavaScript agree record for record, and on
          // the error: the batch only guesses where records start.
          assert.deepEqual(run(false), { out, error });
        },
      ),
      { numRuns: 300, seed: 42 },
    );
  });

  it("validates its options", () => {
    assert.throws(() => new WalDecoder({ startLsn: 0x1000001n }), RangeError);
    assert.throws(() => new WalDecoder({ startLsn: -8n }), RangeError);
    assert.throws(() => new WalDecoder({ startLsn: 8 as unknown as bigint }), TypeError);
    assert.throws(() => new WalDecoder({ startLsn: 0n, segmentSize: 3 * MiB }), /3145728/);
    assert.throws(() => new WalDecoder({ startLsn: 0n, majorVersion: 14 }), RangeError);
    const d = new WalDecoder({ startLsn: 0n });
    d.end();
    assert.throws(() => d.push(Buffer.alloc(1)), TypeError);
    assert.throws(() => d.push("x" as unknown as Buffer), TypeError);
  });

  it("decodes the block reference fields", () => {
    const start = 0x100_0000n;
    const w = new WalBuilder({ startLsn: start, segmentSize: MiB });
    const rec = buildRecord(
      {
        rmid: 10,
        info: 0x80,
        xid: 77,
        origin: 9,
        toplevelXid: 55,
        blocks: [
          {
            id: 0,
            rel: { spc: 1663, db: 5, rel: 16400 },
            blk: 4,
            data: payload(10, 1),
            willInit: true,
          },
          {
            id: 2,
            fork: 1,
            rel: { spc: 1663, db: 5, rel: 16400 },
            sameRel: true,
            blk: 9,
            image: {
              bytes: payload(1000, 2),
              holeOffset: 200,
              bimgInfo: 0x01 | 0x02 | 0x08,
              holeLength: 4000,
            },
          },
          {
            id: 3,
            rel: { spc: 1664, db: 0, rel: 1262 },
            blk: 0,
            image: { bytes: payload(8192, 3), holeOffset: 0, bimgInfo: 0 },
          },
        ],
        mainData: payload(300, 4),
      },
      0n,
    );
    w.raw(rec);
    const dec = new WalDecoder({ startLsn: start, segmentSize: MiB });
    dec.push(w.bytes());
    const r = dec.next();
    assert.ok(r);
    const info = r.toInfo();
    assert.equal(info.totLen, rec.length);
    assert.equal(info.fpiLen, 1000 + 8192);
    assert.equal(info.recLen, rec.length - 9192);
    assert.equal(info.origin, 9);
    assert.equal(info.toplevelXid, 55);
    assert.equal(info.mainDataLen, 300);
    assert.deepEqual(r.mainData(), payload(300, 4));
    assert.deepEqual(
      info.blocks.map((b) => [
        b.id,
        b.rel.rel,
        b.fork,
        b.blk,
        b.hasImage,
        b.hasData,
        b.willInit,
        b.imageLen,
        b.holeOffset,
        b.holeLength,
        b.compression,
        b.applyImage,
      ]),
      [
        [0, 16400, 0, 4, false, true, true, 0, 0, 0, "none", false],
        [2, 16400, 1, 9, true, false, false, 1000, 200, 4000, "lz4", true],
        [3, 1262, 0, 0, true, false, false, 8192, 0, 0, "none", false],
      ],
    );
    assert.deepEqual(r.blockImage(r.block(2)!), payload(1000, 2));
    assert.deepEqual(r.blockData(r.block(0)!), payload(10, 1));
    const kept = r.detach();
    assert.deepEqual(kept.toInfo(), info);
    assert.equal(formatLsn(r.end), formatLsn(w.pos));
    assert.ok(w.pos > start + 8192n, "the record spans two pages");
  });
});
