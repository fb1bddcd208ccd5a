/**
 * Pooled WAL memory in a timeline: a layer read across its own flush, walRange across a
 * freeze, and, property-style, a timeline fed pooled pieces (released after
 * ingest, as the WAL receiver does) in random sizes, with random freezes, dropped tails,
 * slow and failing layer writes, readers that stop early, and the pool churned so that freed
 * slabs are handed out again. `npm test` runs with TIDELINE_POOL_POISON=1 (scripts/run-tests.mjs):
 * freed slabs are overwritten, so any read of freed memory shows as wrong bytes, and the pool
 * throws on any retain or release of a freed slab. Every byte read is compared with the source.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Timeline, walBuffers, writeLayerFile } from "../../src/timeline/index.js";
import { parseLsn } from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

/** Hands out (and so overwrites) whatever slabs are free. */
function churn(n: number): void {
  const views = Array.from({ length: n }, () => walBuffers.copy(Buffer.alloc(200_000, 0xdd)));
  for (const v of views) walBuffers.release(v);
}

describe("pooled WAL memory under load", { skip: !HAVE_PG15 }, () => {
  let src: WalSource;
  let dir: string;
  useWalSource(
    [
      "CREATE TABLE t (id int PRIMARY KEY, v text)",
      "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 4000) g",
      "CHECKPOINT",
      "UPDATE t SET v = repeat('z', 200) WHERE id % 7 = 0",
      "SELECT pg_logical_emit_message(false, 'p', repeat('y', 70000))",
      "SELECT pg_switch_wal()",
      "INSERT INTO t SELECT g, repeat('w', 100) FROM generate_series(4001, 6000) g",
      // A record longer than several pieces: freezes cut through it.
      "SELECT pg_logical_emit_message(false, 'q', repeat('u', 300000))",
      "UPDATE t SET v = 'a' WHERE id % 5 = 0",
    ],
    "pooled",
    (s) => {
      src = s.src;
      dir = s.dir;
    },
  );

  const source = (from: bigint, length: number) =>
    src.bytes.subarray(Number(from - src.start), Number(from - src.start) + length);

  it("a layer read across its own flush keeps its memory until the read ends, then gives it back", async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const writeLayer: typeof writeLayerFile = async (d, layer, meta, token) => {
      await token.race(held);
      return writeLayerFile(d, layer, meta, token);
    };
    const tl = await Timeline.create({
      dataDir: dir,
      id: "pooled",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 128 << 10,
      maxFrozenLayers: 1000,
      maxFrozenBytes: 1 << 30,
      writeLayer,
    });
    try {
      const c = testContext();
      // As the WAL receiver does: each piece copied into the pool, released after ingest.
      for (const p of pieces(src, src.start, src.end, prng(11), 60_000)) {
        const pooled = walBuffers.copy(p.bytes);
        await tl.ingest(p.lsn, pooled, c);
        walBuffers.release(pooled);
      }
      tl.freeze();
      const to = tl.lastRecordLsn;
      assert.equal(tl.layerFiles.length, 0, "every layer is still in memory");
      const reader = tl.walRange(src.start, to, c);
      const first = await reader.next();
      assert.ok(!first.done);
      const got: Buffer[] = [first.value];
      // Now every layer is written and given back, while the read is under way...
      release();
      while (tl.diskConsistentLsn < to) await new Promise((r) => setTimeout(r, 5));
      // ... and the pool hands out memory again, filled with something else.
      const reusedBefore = walBuffers.stats.reused;
      const junk = Array.from({ length: 200 }, () => walBuffers.copy(Buffer.alloc(200_000, 0xee)));
      for (const j of junk) walBuffers.release(j);
      for (let r = await reader.next(); !r.done; r = await reader.next()) got.push(r.value);
      const bytes = Buffer.concat(got);
      assert.ok(
        bytes.equals(src.bytes.subarray(0, Number(to - src.start))),
        "the bytes read are the source's, not the pool's new contents",
      );
      // The read is over: the layers' memory went back to the pool and is reused.
      const again = Array.from({ length: 200 }, () => walBuffers.copy(Buffer.alloc(200_000, 1)));
      for (const j of again) walBuffers.release(j);
      assert.ok(
        walBuffers.stats.reused > reusedBefore,
        `slabs reused: ${walBuffers.stats.reused - reusedBefore}`,
      );
    } finally {
      release();
      await tl.shutdown("hard");
    }
  });

  it("walRange gives every byte asked for, also when the open layer is frozen during the read", async () => {
    const tl = await Timeline.create({
      dataDir: dir,
      id: "short",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 256 << 10,
      fsync: false,
    });
    const c = testContext();
    try {
      await tl.ingest(src.start, Buffer.from(source(src.start, 300_000)), c);
      await tl.ingest(src.start + 300_000n, Buffer.from(source(src.start + 300_000n, 100_000)), c);
      const to = tl.streamEnd; // what GET /wal reads by default: past the last whole record
      assert.ok(to > tl.lastRecordLsn, "the open layer ends inside a record");
      const reader = tl.walRange(src.start, to, c);
      const first = await reader.next();
      assert.ok(!first.done);
      const got: Buffer[] = [first.value];
      tl.freeze(); // the open layer is cut at its last record; the rest moves on
      for (let r = await reader.next(); !r.done; r = await reader.next()) got.push(r.value);
      const bytes = Buffer.concat(got);
      assert.equal(BigInt(bytes.length), to - src.start);
      assert.ok(bytes.equals(source(src.start, bytes.length)));
    } finally {
      await tl.shutdown("hard");
    }
  });

  it("never serves, writes or reads freed memory (seeded)", async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const rnd = prng(seed);
      const breakAfter = seed % 4 === 0 ? 2 + Math.floor(rnd() * 6) : Number.POSITIVE_INFINITY;
      let writes = 0;
      const writeLayer: typeof writeLayerFile = async (d, layer, meta, token, o) => {
        await sleep(Math.floor(rnd() * 4));
        if (++writes > breakAfter) throw new Error("disk full (injected)");
        return writeLayerFile(d, layer, meta, token, o);
      };
      const tl = await Timeline.create({
        dataDir: dir,
        id: `load${seed}`,
        startLsn: src.start,
        segmentSize: src.segmentSize,
        layerSize: (32 << 10) + Math.floor(rnd() * (400 << 10)),
        maxFrozenLayers: 1 + Math.floor(rnd() * 3),
        writeLayer,
        fsync: false,
      });
      const c = testContext();
      const readers: Promise<void>[] = [];
      const walReader = async (from: bigint, to: bigint, stopAfter: number) => {
        let at = from;
        let n = 0;
        for await (const piece of tl.walRange(from, to, c)) {
          assert.ok(
            piece.equals(source(at, piece.length)),
            `walRange bytes at ${at}, seed ${seed}`,
          );
          at += BigInt(piece.length);
          if (++n >= stopAfter) break;
          await sleep(Math.floor(rnd() * 3));
        }
        if (n < stopAfter)
          assert.equal(at, to, `walRange ${from}..${to} ended early, seed ${seed}`);
      };
      const recordReader = async (from: bigint, to: bigint) => {
        let k = 0;
        for await (const r of tl.records(from, to, c)) {
          assert.ok(parseLsn(r.lsn) >= from);
          if (++k % 50 === 0) await sleep(1);
        }
      };
      const somewhere = () =>
        src.start + BigInt(Math.floor(rnd() * Number(tl.streamEnd - src.start)));
      let at = src.start;
      let broken = false;
      while (at < src.end) {
        const n = BigInt(Math.max(1, Math.floor(rnd() * rnd() * 150_000)));
        const stop = at + n < src.end ? at + n : src.end;
        const pooled = walBuffers.copy(source(at, Number(stop - at)));
        try {
          await tl.ingest(at, pooled, c);
        } catch (error) {
          if (breakAfter === Number.POSITIVE_INFINITY) throw error;
          broken = true;
          break;
        } finally {
          walBuffers.release(pooled);
        }
        at = stop;
        const r = rnd();
        if (r < 0.05) tl.freeze();
        else if (r < 0.08) at = tl.discardIncompleteTail();
        else if (r < 0.2) readers.push(walReader(somewhere(), tl.streamEnd, rnd() < 0.3 ? 1 : 1e9));
        else if (r < 0.25) readers.push(recordReader(somewhere(), tl.streamEnd));
        if (rnd() < 0.3) churn(4);
        if (rnd() < 0.3) await sleep(Math.floor(rnd() * 3));
      }
      await Promise.all(readers);
      if (broken) {
        const all = await tl.readWal(src.start, tl.lastRecordLsn, c);
        assert.ok(all.equals(source(src.start, all.length)), `broken timeline's WAL, seed ${seed}`);
        await tl.shutdown("hard");
      } else {
        await tl.flush(c);
        const all = await tl.readWal(src.start, tl.lastRecordLsn, c);
        assert.ok(all.equals(source(src.start, all.length)), `final read, seed ${seed}`);
        await tl.shutdown("freeze-and-flush");
      }
      churn(40);
    }
  });
});
