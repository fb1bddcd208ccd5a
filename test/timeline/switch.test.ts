/**
 * A WAL switch record (`pg_switch_wal()`) ends, by PostgreSQL's definition, at the end of
 * its segment; its bytes are 24, the rest of the segment is padding that streams in after
 * it. The timeline's LSNs must stay consistent while that padding streams in:
 * `lastRecordLsn` may not run ahead of the bytes received (a `waitLsn` caller must be able
 * to read what it waited for), and a freeze-and-flush shutdown inside the padding must
 * leave `diskConsistentLsn == lastRecordLsn`, also after a reopen.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Timeline } from "../../src/timeline/index.js";
import { formatLsn, WalDecoder } from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g",
  "SELECT pg_switch_wal()",
  "INSERT INTO t SELECT g, 'z' FROM generate_series(1001, 1100) g",
];

const ctx = testContext;

describe("Timeline across a WAL switch whose padding is still streaming", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  /** The switch record: where it starts, where its bytes end, where it ends (a segment end). */
  let sw: { lsn: bigint; bytesEnd: bigint; end: bigint };

  useWalSource(WORKLOAD, "switch", (s) => {
    ({ src, dir } = s);
    const dec = new WalDecoder({ startLsn: src.start, segmentSize: src.segmentSize });
    dec.push(src.bytes);
    dec.end();
    for (let r = dec.next(); r !== undefined; r = dec.next()) {
      if (r.rmid === 0 && (r.info & 0xf0) === 0x40) {
        sw = { lsn: r.lsn, bytesEnd: r.lsn + BigInt(r.totLen), end: r.end };
        break;
      }
    }
    assert.ok(sw, "the workload wrote a switch record");
    assert.equal(sw.end % BigInt(src.segmentSize), 0n);
    assert.ok(sw.end - sw.bytesEnd > 1000n, "its padding is long enough to stop inside");
  });

  it("lastRecordLsn never runs ahead of the bytes received, so what waitLsn waited for can be read", {}, async () => {
    const tl = await Timeline.create({
      dataDir: join(dir, "ahead"),
      id: "a",
      startLsn: src.start,
      segmentSize: src.segmentSize,
    });
    try {
      const c = ctx();
      // Small pieces, so several of them end inside the padding.
      for (const p of pieces(src, src.start, src.end, prng(5), 4000)) {
        await tl.ingest(p.lsn, p.bytes, c);
        assert.ok(
          tl.lastRecordLsn <= tl.streamEnd,
          `lastRecordLsn ${formatLsn(tl.lastRecordLsn)} is beyond the bytes received (${formatLsn(tl.streamEnd)})`,
        );
        await tl.waitLsn(tl.lastRecordLsn, c, { timeoutMs: 1000 });
        await tl.readWal(src.start, tl.lastRecordLsn, c);
      }
    } finally {
      await tl.shutdown("hard");
    }
  });

  it("freeze-and-flush inside the padding leaves diskConsistentLsn == lastRecordLsn, also after a reopen", {}, async () => {
    const dataDir = join(dir, "flush");
    const tl = await Timeline.create({
      dataDir,
      id: "f",
      startLsn: src.start,
      segmentSize: src.segmentSize,
    });
    const stop = sw.bytesEnd + 100n; // the switch record is complete; its padding is not
    const c = ctx();
    for (const p of pieces(src, src.start, stop, prng(6))) await tl.ingest(p.lsn, p.bytes, c);
    const before = tl.lastRecordLsn;
    const result = await tl.shutdown("freeze-and-flush");
    assert.equal(
      formatLsn(result.diskConsistentLsn),
      formatLsn(result.lastRecordLsn),
      "after freeze-and-flush, diskConsistentLsn == lastRecordLsn",
    );
    const reopened = await Timeline.open({ dataDir, id: "f" });
    try {
      assert.ok(
        reopened.lastRecordLsn >= before,
        `a clean stop lost nothing, yet lastRecordLsn went back from ${formatLsn(before)} to ${formatLsn(reopened.lastRecordLsn)}`,
      );
      // And the stream resumes through the rest of the padding to the end.
      for (const p of pieces(src, reopened.streamEnd, src.end, prng(7)))
        await reopened.ingest(p.lsn, p.bytes, c);
      assert.equal(reopened.lastRecordLsn, src.end);
      assert.ok((await reopened.readWal(src.start, src.end, c)).equals(src.bytes));
    } finally {
      await reopened.shutdown("hard");
    }
  });
});
