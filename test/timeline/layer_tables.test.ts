import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { BlockTable, RecordTable } from "../../src/timeline/index.js";

const COLUMNS = ["spc", "db", "rel", "fork", "blk", "flags"] as const;

describe("BlockTable.sortedCopy", () => {
  it("orders like a comparator sort by (spc, db, rel, fork, blk, record), for any rows and record range", () => {
    const u32 = fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 0xffff_ffff }));
    const row = fc.record({
      spc: u32,
      db: u32,
      rel: u32,
      fork: fc.integer({ min: 0, max: 3 }),
      blk: u32,
      flags: fc.integer({ min: 0, max: 7 }),
    });
    fc.assert(
      fc.property(fc.array(row, { maxLength: 400 }), fc.nat(), fc.nat(), (rows, a, b) => {
        const t = new BlockTable();
        for (const [i, r] of rows.entries())
          t.pushRaw(r.spc, r.db, r.rel, r.fork, r.blk, r.flags, i);
        const from = rows.length === 0 ? 0 : a % rows.length;
        const to = rows.length === 0 ? 0 : from + (b % (rows.length - from + 1));
        const got = t.sortedCopy(from, to);
        const expected = rows
          .map((r, i) => ({ ...r, record: i }))
          .filter((r) => r.record >= from && r.record < to)
          .sort(
            (x, y) =>
              x.spc - y.spc ||
              x.db - y.db ||
              x.rel - y.rel ||
              x.fork - y.fork ||
              x.blk - y.blk ||
              x.record - y.record,
          );
        assert.equal(got.length, expected.length);
        assert.equal(got.sorted, true);
        expected.forEach((e, k) => {
          for (const c of COLUMNS) assert.equal(got[c][k], e[c], `row ${k} ${c}`);
          assert.equal(got.record[k], e.record - from);
        });
      }),
      { seed: 42, numRuns: 300 },
    );
  });
});

describe("serializedParts and compact", () => {
  it("the parts concatenate to serialize(), and a compact record table round-trips", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            lsn: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
            len: fc.integer({ min: 24, max: 1 << 20 }),
            xid: fc.integer({ min: 0, max: 0xffff_ffff }),
            rmid: fc.integer({ min: 0, max: 255 }),
            info: fc.integer({ min: 0, max: 255 }),
          }),
          { maxLength: 300 },
        ),
        (rows) => {
          const t = new RecordTable();
          for (const r of rows) t.push(r.lsn, r.lsn + BigInt(r.len), r.xid, r.len, r.rmid, r.info);
          assert.ok(Buffer.concat(t.serializedParts()).equals(t.serialize()));
          const c = t.compact();
          for (const col of [c.lsn, c.end, c.xid, c.totLen, c.rmid, c.info]) {
            assert.equal(col.length, rows.length);
          }
          assert.ok(c.serialize().equals(t.serialize()));
          assert.deepEqual(RecordTable.deserialize(c.serialize(), c.length), c);
          // Already exact: the same table.
          assert.equal(c.compact(), c);
          const b = new BlockTable();
          for (const [i, r] of rows.entries()) b.pushRaw(r.xid, 5, r.rmid, r.info & 3, r.len, 0, i);
          const sorted = b.sortedCopy();
          assert.ok(Buffer.concat(sorted.serializedParts()).equals(sorted.serialize()));
        },
      ),
    );
  });
});
