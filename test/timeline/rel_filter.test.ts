/**
 * Layers' relation filters: never a false "no", rarely a false "maybe", and carried by the
 * timeline index (checked when read).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  BlockTable,
  LayerCorruptError,
  mayTouchRelation,
  parseTimelineIndex,
  REL_FILTER_BYTES,
  relationFilter,
  serializeTimelineIndex,
  type TimelineIndex,
} from "../../src/timeline/index.js";

const relation = fc.record({
  spc: fc.constantFrom(1663, 1664, 16400),
  db: fc.integer({ min: 1, max: 100_000 }),
  rel: fc.integer({ min: 1, max: 0xffff_ffff }),
  fork: fc.integer({ min: 0, max: 3 }),
});

describe("relation filters", () => {
  it("say yes to every relation a layer touches (fast-check), and no to most others", () => {
    let falseMaybe = 0;
    let asked = 0;
    fc.assert(
      fc.property(fc.array(relation, { minLength: 1, maxLength: 20 }), relation, (rels, other) => {
        const blocks = new BlockTable();
        rels.forEach((r, i) => {
          blocks.pushRaw(r.spc, r.db, r.rel, r.fork, i, 0, i);
          blocks.pushRaw(r.spc, r.db, r.rel, r.fork, i + 1, 0, i);
        });
        const filter = relationFilter(blocks);
        assert.equal(Buffer.from(filter, "base64").length, REL_FILTER_BYTES);
        for (const r of rels) assert.ok(mayTouchRelation(filter, { ...r, blk: 7 }));
        const touched = rels.some(
          (r) =>
            r.spc === other.spc &&
            r.db === other.db &&
            r.rel === other.rel &&
            r.fork === other.fork,
        );
        if (!touched) {
          asked++;
          if (mayTouchRelation(filter, { ...other, blk: 0 })) falseMaybe++;
        }
      }),
      { numRuns: 2000, seed: 4 },
    );
    // Up to 20 relations in 512 bits with 3 hashes: ~0.2% wrong "maybe" expected.
    assert.ok(falseMaybe / asked < 0.02, `${falseMaybe} of ${asked}`);
    // No filter (an older index): every relation may be there.
    assert.ok(mayTouchRelation(undefined, { spc: 1, db: 2, rel: 3, fork: 0, blk: 0 }));
  });

  it("travel in the timeline index, which refuses a malformed one", () => {
    const blocks = new BlockTable();
    blocks.pushRaw(1663, 5, 16384, 0, 0, 0, 0);
    const index: TimelineIndex = {
      id: "main",
      systemId: 7n,
      pgVersion: 15,
      pgTimeline: 1,
      segmentSize: 16 << 20,
      startLsn: 0x1000000n,
      diskConsistentLsn: 0x1100000n,
      nextRecordLsn: 0x1100000n,
      lastRecordEnd: 0x1100000n,
      remoteConsistentLsn: 0n,
      history: [],
      layers: [
        {
          file: "a.layer",
          start: 0x1000000n,
          end: 0x1080000n,
          size: 10,
          records: 1,
          relFilter: relationFilter(blocks),
        },
        { file: "b.layer", start: 0x1080000n, end: 0x1100000n, size: 10, records: 1 },
      ],
    };
    const text = serializeTimelineIndex(index);
    const back = parseTimelineIndex(text, "test");
    assert.deepEqual(back.layers, index.layers);
    const bad = text.replace(index.layers[0]!.relFilter!, "AAAA");
    assert.throws(() => parseTimelineIndex(bad, "test"), LayerCorruptError);
    assert.throws(
      () => parseTimelineIndex(bad, "test"),
      /layers\[0\]\.relFilter is not a relation filter/,
    );
  });
});
