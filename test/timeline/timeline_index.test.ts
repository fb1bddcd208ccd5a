import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type IndexedLayer,
  parseTimelineIndex,
  serializeTimelineIndex,
  type TimelineIndex,
} from "../../src/timeline/index.js";

const lsn = fc.bigInt({ min: 0n, max: (1n << 62n) - 1n });

/** A valid index: its layers follow each other from startLsn up to diskConsistentLsn. */
const index: fc.Arbitrary<TimelineIndex> = fc
  .record(
    {
      id: fc.string({ maxLength: 20 }),
      systemId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      pgVersion: fc.integer({ min: 0, max: 18 }),
      pgTimeline: fc.integer({ min: 1, max: 1000 }),
      segmentSize: fc.constantFrom(1 << 20, 16 << 20, 1 << 30),
      startLsn: lsn,
      nextRecordLsn: lsn,
      lastRecordEnd: lsn,
      remoteConsistentLsn: lsn,
      layers: fc.array(
        fc.record(
          {
            file: fc.string({ maxLength: 40 }),
            length: fc.integer({ min: 1, max: 1 << 30 }),
            size: fc.nat(),
            records: fc.nat(),
            relFilter: fc
              .uint8Array({ minLength: 64, maxLength: 64 })
              .map((b) => Buffer.from(b).toString("base64")),
          },
          { requiredKeys: ["file", "length", "size", "records"], noNullPrototype: true },
        ),
        { maxLength: 6 },
      ),
      history: fc.array(
        fc.record(
          { parent: fc.nat(), timeline: fc.nat(), switchLsn: lsn },
          { noNullPrototype: true },
        ),
        { maxLength: 3 },
      ),
    },
    { noNullPrototype: true },
  )
  .map(({ layers, ...rest }) => {
    let at = rest.startLsn;
    const listed: IndexedLayer[] = layers.map(({ length, ...l }) => {
      const entry = { ...l, start: at, end: at + BigInt(length) };
      at = entry.end;
      return entry;
    });
    return { ...rest, layers: listed, diskConsistentLsn: at };
  });

/** What a test compares: the index's values, in plain data. */
function values(ix: TimelineIndex): unknown {
  return {
    ...ix,
    layers: ix.layers.map((l) => [l.file, l.start, l.end, l.size, l.records, l.relFilter ?? null]),
    history: ix.history.map((h) => [h.parent, h.timeline, h.switchLsn]),
  };
}

describe("serializeTimelineIndex", () => {
  it("writes JSON.stringify's own layout, which reads back as the same index, for any index (fast-check)", () => {
    fc.assert(
      fc.property(index, (ix) => {
        const text = serializeTimelineIndex(ix);
        // Exactly what one JSON.stringify of the whole (two-space indented) would give.
        assert.equal(`${JSON.stringify(JSON.parse(text), null, 2)}\n`, text);
        assert.deepEqual(values(parseTimelineIndex(text, "test")), values(ix));
        // Again, now from the entries made the first time.
        assert.equal(serializeTimelineIndex(ix), text);
      }),
    );
  });

  it("remakes an entry that was changed in place since it was written", () => {
    const entry: IndexedLayer = {
      file: "a.layer",
      start: 0x1000000n,
      end: 0x2000000n,
      size: 9,
      records: 3,
    };
    const ix: TimelineIndex = {
      id: "main",
      systemId: 1n,
      pgVersion: 15,
      pgTimeline: 1,
      segmentSize: 16 << 20,
      startLsn: 0x1000000n,
      diskConsistentLsn: 0x2000000n,
      nextRecordLsn: 0x2000000n,
      lastRecordEnd: 0x2000000n,
      remoteConsistentLsn: 0n,
      layers: [entry],
      history: [],
    };
    const before = serializeTimelineIndex(ix);
    assert.match(before, /"records": 3\n {4}\}/);
    // Each field on its own: any one changed makes the entry's text again.
    entry.records = 4;
    assert.match(serializeTimelineIndex(ix), /"records": 4\n {4}\}/);
    entry.size = 10;
    assert.match(serializeTimelineIndex(ix), /"size": 10,/);
    entry.relFilter = `${"A".repeat(86)}==`;
    const after = serializeTimelineIndex(ix);
    assert.match(after, /"records": 4,\n {6}"relFilter": "A+=="/);
    assert.deepEqual(values(parseTimelineIndex(after, "test")), values(ix));
  });
});
