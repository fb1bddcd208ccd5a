/**
 * Damaged WAL mid-stream: `ingest` throws the decoder's error after dropping the bytes past
 * the last complete record, so the stream can be restarted at `lastRecordLsn` — with the
 * right bytes this time the timeline must end up holding exactly the source, every record
 * once, also across freezes and flushes around the damage, and after a reopen.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Timeline } from "../../src/timeline/index.js";
import { formatLsn, WalDecodeError } from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 4000) g",
  "CHECKPOINT",
  "UPDATE t SET v = 'y' WHERE id % 5 = 0",
  "DELETE FROM t WHERE id % 7 = 0",
];

const ctx = testContext;

describe("Timeline ingest of damaged WAL, restarted at lastRecordLsn", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;

  useWalSource(WORKLOAD, "damaged", (s) => {
    ({ src, dir } = s);
  });

  /** Feeds `[from, to)` of the source in random pieces, with `flip` (an LSN) damaged. */
  async function feed(tl: Timeline, from: bigint, to: bigint, rnd: () => number, flip?: bigint) {
    const c = ctx();
    for (const p of pieces(src, from, to, rnd, 40_000)) {
      if (flip !== undefined && flip >= p.lsn && flip < p.lsn + BigInt(p.bytes.length))
        p.bytes[Number(flip - p.lsn)]! ^= 0x5a;
      await tl.ingest(p.lsn, p.bytes, c);
      if (rnd() < 0.05) await tl.flush(c);
    }
  }

  it("every damaged record is refused; the restarted stream leaves exactly the source", async (t) => {
    for (const seed of [1, 2, 3]) {
      const rnd = prng(seed);
      const dataDir = join(dir, `s${seed}`);
      const tl = await Timeline.create({
        dataDir,
        id: "d",
        startLsn: src.start,
        segmentSize: src.segmentSize,
        layerSize: (32 + Math.floor(rnd() * 96)) << 10,
      });
      try {
        // Damaged records at random, in order, a few hundred apart at least.
        const targets: number[] = [];
        for (let i = 50 + Math.floor(rnd() * 300); i < src.records.length - 10; ) {
          targets.push(i);
          i += 300 + Math.floor(rnd() * (src.records.length / 6));
        }
        assert.ok(targets.length >= 4, `${targets.length} damaged records`);
        for (const i of targets) {
          const rec = src.records[i]!;
          if (rec.lsn < tl.streamEnd) continue;
          // A byte of the record's xl_xid: CRC-covered, always on the record's first page.
          const flip = rec.lsn + 4n + BigInt(Math.floor(rnd() * 4));
          // Beyond the record's end by a random amount: the error comes with the piece completing it.
          const stop = rec.end + BigInt(Math.floor(rnd() * 30_000));
          const upTo = stop < src.end ? stop : src.end;
          const err = await feed(tl, tl.streamEnd, upTo, rnd, flip).then(
            () => undefined,
            (e: unknown) => e,
          );
          assert.ok(
            err instanceof WalDecodeError,
            `damage at ${formatLsn(flip)} was refused: ${err}`,
          );
          const at = `after damage at ${formatLsn(flip)}`;
          assert.ok(
            tl.lastRecordLsn <= rec.lsn,
            `${at}: lastRecordLsn ${formatLsn(tl.lastRecordLsn)}`,
          );
          assert.equal(
            tl.streamEnd,
            tl.lastRecordLsn,
            `${at}: the stream restarts at lastRecordLsn`,
          );
          assert.equal(
            tl.lastRecordLsn,
            src.records[i - 1]!.end,
            `${at}: every record before it kept`,
          );
          assert.ok(tl.diskConsistentLsn <= tl.lastRecordLsn);
          const kept = await tl.readWal(src.start, tl.streamEnd, ctx());
          assert.ok(kept.equals(src.bytes.subarray(0, kept.length)), `${at}: kept bytes differ`);
          assert.equal(tl.state, "active");
        }
        await feed(tl, tl.streamEnd, src.end, rnd);
        await tl.flush(ctx());
        assert.equal(tl.lastRecordLsn, src.end);
        assert.equal(tl.diskConsistentLsn, src.end);
        t.diagnostic(
          `seed ${seed}: ${targets.length} damaged records, ${tl.layerFiles.length} layers`,
        );
      } finally {
        await tl.shutdown("freeze-and-flush");
      }
      const reopened = await Timeline.open({ dataDir, id: "d", readOnly: true });
      try {
        assert.equal(reopened.diskConsistentLsn, src.end);
        assert.ok((await reopened.readWal(src.start, src.end, ctx())).equals(src.bytes));
        const lsns: string[] = [];
        for await (const r of reopened.records(src.start, src.end, ctx())) lsns.push(r.lsn);
        assert.deepEqual(
          lsns,
          src.records.map((r) => formatLsn(r.lsn)),
          "every record exactly once",
        );
      } finally {
        await reopened.shutdown("hard");
      }
    }
  });
});
