/**
 * Where a timeline cut at a layer boundary resumes, derived from its layers alone
 * (`indexUpTo`, `Timeline.indexAt`): at every boundary, including ones inside a switch
 * record's padding and layers that hold nothing but padding, it equals the index of a
 * timeline that was fed exactly that WAL and flushed; never the newer fields of the index
 * it was cut from.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { DiskLayer, indexUpTo, Timeline } from "../../src/timeline/index.js";
import { formatLsn } from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g",
  "SELECT pg_switch_wal()",
  "INSERT INTO t SELECT g, 'z' FROM generate_series(3001, 6000) g",
  "SELECT pg_switch_wal()",
  "UPDATE t SET v = 'y' WHERE id % 3 = 0",
];

const ctx = testContext;

describe("The resume point of a timeline cut at a layer boundary", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;

  useWalSource(WORKLOAD, "resume", (s) => {
    ({ src, dir } = s);
  });

  it("is derived from the layers, equal at every boundary to a timeline fed exactly that WAL", async () => {
    // Small layers and small pieces: boundaries fall inside switch padding, and some
    // layers hold padding only.
    const tl = await Timeline.create({
      dataDir: join(dir, "full"),
      id: "full",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 48 << 10,
    });
    const c = ctx();
    for (const p of pieces(src, src.start, src.end, prng(11), 30_000))
      await tl.ingest(p.lsn, p.bytes, c);
    await tl.flush(c);
    const full = tl.indexSnapshot();
    const opened = new Map<string, DiskLayer>();
    for (const f of tl.layerFiles) opened.set(f.file, await DiskLayer.open(f.path));
    const paddingOnly = [...opened.values()].filter((l) => l.records.length === 0).length;
    assert.ok(paddingOnly > 0, "some layers hold only a switch's padding");

    const boundaries = [src.start, ...full.layers.map((l) => l.end)];
    for (const [i, end] of boundaries.entries()) {
      const cut = await indexUpTo(full, end, async (l) => opened.get(l.file)!);
      const viaTimeline = await tl.indexAt(end, c);
      assert.deepEqual(viaTimeline, cut, "Timeline.indexAt is indexUpTo over its layers");
      assert.equal(cut.layers.length, i);
      assert.equal(cut.diskConsistentLsn, end);
      assert.ok(cut.remoteConsistentLsn <= end);

      // The truth: a timeline fed exactly [start, end) and flushed.
      const truth = await Timeline.create({
        dataDir: join(dir, `truth-${i}`),
        id: "truth",
        startLsn: src.start,
        segmentSize: src.segmentSize,
        systemId: full.systemId,
      });
      try {
        if (end > src.start) {
          await truth.ingest(
            src.start,
            Buffer.from(src.bytes.subarray(0, Number(end - src.start))),
            c,
          );
          await truth.flush(c);
        }
        const t = truth.indexSnapshot();
        const at = `at ${formatLsn(end)} (boundary ${i})`;
        assert.equal(t.diskConsistentLsn, end, `the truth timeline is durable ${at}`);
        assert.equal(
          formatLsn(cut.nextRecordLsn),
          formatLsn(t.nextRecordLsn),
          `nextRecordLsn ${at}`,
        );
        assert.equal(
          formatLsn(cut.lastRecordEnd),
          formatLsn(t.lastRecordEnd),
          `lastRecordEnd ${at}`,
        );
        assert.equal(cut.pgTimeline, t.pgTimeline, `pgTimeline ${at}`);
        if (i > 0) {
          assert.equal(cut.pgVersion, t.pgVersion, `pgVersion ${at}`);
          assert.equal(cut.systemId, t.systemId, `systemId ${at}`);
        }
        assert.deepEqual(cut.history, t.history, `history ${at}`);
      } finally {
        await truth.shutdown("hard");
      }
      // The full index's own resume fields are those of its newest layer only.
      if (i < boundaries.length - 1 && i > 0) {
        assert.ok(
          cut.nextRecordLsn < full.nextRecordLsn,
          `the cut is behind the full index ${formatLsn(end)}`,
        );
      }
    }
    await tl.shutdown("hard");
  });

  it("refuses an LSN that is not a layer boundary", async () => {
    const tl = await Timeline.create({
      dataDir: join(dir, "refuse"),
      id: "refuse",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 256 << 10,
    });
    try {
      const c = ctx();
      for (const p of pieces(src, src.start, src.end, prng(3))) await tl.ingest(p.lsn, p.bytes, c);
      await tl.flush(c);
      await assert.rejects(tl.indexAt(tl.diskConsistentLsn - 1n, c), RangeError);
    } finally {
      await tl.shutdown("hard");
    }
  });
});
