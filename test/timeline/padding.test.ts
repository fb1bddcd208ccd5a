/**
 * Every record's end (PostgreSQL's EndRecPtr, what the decoder reports) is 8-byte aligned:
 * it includes up to 7 bytes of alignment padding that stream in after the record's bytes.
 * A piece of WAL may end inside that padding (replication messages are cut anywhere), and a
 * layer may be cut there (the open layer is full, or `flush` is called). The timeline must
 * stay consistent: `lastRecordLsn` may not run ahead of the bytes received, and a layer cut
 * inside the padding must still serve the record (records, block history). The switch
 * record's padding (the rest of its segment) is `switch.test.ts`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type BlockKey, Timeline } from "../../src/timeline/index.js";
import { formatLsn, WalDecodeError, WalDecoder } from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g",
  "UPDATE t SET v = 'y' WHERE id % 3 = 0",
];

const ctx = testContext;

describe("Timeline when a piece ends inside a record's alignment padding", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  /** Records on one page whose bytes end 1..7 bytes before their (aligned) end. */
  let padded: { lsn: bigint; bytesEnd: bigint; end: bigint; block: BlockKey | undefined }[];

  useWalSource(WORKLOAD, "padding", (s) => {
    ({ src, dir } = s);
    const dec = new WalDecoder({ startLsn: src.start, segmentSize: src.segmentSize });
    dec.push(src.bytes);
    dec.end();
    padded = [];
    try {
      for (let r = dec.next(); r !== undefined; r = dec.next()) {
        const bytesEnd = r.lsn + BigInt(r.totLen);
        const onOnePage = r.lsn / 8192n === (bytesEnd - 1n) / 8192n && r.lsn % 8192n >= 40n;
        if (onOnePage && r.end > bytesEnd) {
          const b = r.blocks[0];
          padded.push({
            lsn: r.lsn,
            bytesEnd,
            end: r.end,
            block:
              b === undefined
                ? undefined
                : { spc: b.spc, db: b.db, rel: b.rel, fork: b.fork, blk: b.blk },
          });
        }
      }
    } catch (error) {
      if (!(error instanceof WalDecodeError && error.endOfWal)) throw error;
    }
    assert.ok(padded.length > 100, "records whose bytes end before their aligned end");
  });

  it("lastRecordLsn stays within the bytes received", async () => {
    const tl = await Timeline.create({
      dataDir: join(dir, "lsn"),
      id: "a",
      startLsn: src.start,
      segmentSize: src.segmentSize,
    });
    try {
      const c = ctx();
      const rec = padded[Math.floor(padded.length / 2)]!;
      for (const p of pieces(src, src.start, rec.bytesEnd, prng(8)))
        await tl.ingest(p.lsn, p.bytes, c);
      assert.equal(tl.streamEnd, rec.bytesEnd);
      assert.ok(
        tl.lastRecordLsn <= tl.streamEnd,
        `lastRecordLsn ${formatLsn(tl.lastRecordLsn)} is beyond the bytes received (${formatLsn(tl.streamEnd)})`,
      );
      // What waitLsn says is there can be read.
      await tl.waitLsn(tl.lastRecordLsn, c, { timeoutMs: 1000 });
      await tl.readWal(src.start, tl.lastRecordLsn, c);
    } finally {
      await tl.shutdown("hard");
    }
  });

  it("layers cut inside alignment padding still serve their last record: records() and blockHistory()", async () => {
    const dataDir = join(dir, "cut");
    const tl = await Timeline.create({
      dataDir,
      id: "a",
      startLsn: src.start,
      segmentSize: src.segmentSize,
    });
    const c = ctx();
    // Cut a layer (flush) right after the bytes of a few padded records, before their padding.
    const cuts = [padded[10]!, padded[Math.floor(padded.length / 3)]!, padded.at(-5)!];
    try {
      let rnd = prng(9);
      for (const rec of cuts) {
        for (const p of pieces(src, tl.streamEnd, rec.bytesEnd, rnd))
          await tl.ingest(p.lsn, p.bytes, c);
        await tl.flush(c);
        assert.equal(tl.streamEnd, rec.bytesEnd);
        rnd = prng(Number(rec.lsn % 1000n));
      }
      for (const p of pieces(src, tl.streamEnd, src.end, rnd)) await tl.ingest(p.lsn, p.bytes, c);
      await tl.flush(c);
      assert.equal(tl.diskConsistentLsn, src.end);
      assert.ok((await tl.readWal(src.start, src.end, c)).equals(src.bytes));
      for (const rec of cuts) {
        const got: string[] = [];
        for await (const r of tl.records(rec.lsn, rec.lsn + 1n, c)) got.push(r.lsn);
        assert.deepEqual(got, [formatLsn(rec.lsn)], `records() of ${formatLsn(rec.lsn)}`);
        if (rec.block !== undefined) {
          const history = await tl.blockHistory(rec.block, rec.lsn, c);
          assert.equal(history.records.at(-1)?.lsn, formatLsn(rec.lsn), "blockHistory()");
        }
      }
      // Every record, once.
      const all: string[] = [];
      for await (const r of tl.records(src.start, src.end, c)) all.push(r.lsn);
      assert.deepEqual(
        all,
        src.records.map((r) => formatLsn(r.lsn)),
      );
    } finally {
      await tl.shutdown("freeze-and-flush");
    }
  });
});
