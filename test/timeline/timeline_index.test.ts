import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type IndexedLayer,
  parseTimelineIndex,
  serializeTimelineIndex,
  type TimelineIndex,
} from "../../src/timeline/index.js";
import { formatLsn } from "../../src/wal/index.js";

/** What the index text was before entries were cached: one JSON.stringify of everything. */
function reference(index: TimelineIndex): string {
  const json = {
    format: 1,
    id: index.id,
    systemId: index.systemId.toString(),
    pgVersion: index.pgVersion,
    pgTimeline: index.pgTimeline,
    segmentSize: index.segmentSize,
    startLsn: formatLsn(index.startLsn),
    diskConsistentLsn: formatLsn(index.diskConsistentLsn),
    nextRecordLsn: formatLsn(index.nextRecordLsn),
    lastRecordEnd: formatLsn(index.lastRecordEnd),
    remoteConsistentLsn: formatLsn(index.remoteConsistentLsn),
    history: index.history.map((h) => ({
      parent: h.parent,
      timeline: h.timeline,
      switchLsn: formatLsn(h.switchLsn),
    })),
    layers: index.layers.map((l) => ({
      file: l.file,
      start: formatLsn(l.start),
      end: formatLsn(l.end),
      size: l.size,
      records: l.records,
      ...(l.relFilter === undefined ? {} : { relFilter: l.relFilter }),
    })),
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

const lsn = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const layer = fc.record(
  {
    file: fc.string({ maxLength: 40 }),
    start: lsn,
    end: lsn,
    size: fc.nat(),
    records: fc.nat(),
    relFilter: fc.base64String({ minLength: 88, maxLength: 88 }),
  },
  { requiredKeys: ["file", "start", "end", "size", "records"] },
);
const index = fc.record({
  id: fc.string({ maxLength: 20 }),
  systemId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  pgVersion: fc.integer({ min: 0, max: 18 }),
  pgTimeline: fc.integer({ min: 1, max: 1000 }),
  segmentSize: fc.constantFrom(1 << 20, 16 << 20, 1 << 30),
  startLsn: lsn,
  diskConsistentLsn: lsn,
  nextRecordLsn: lsn,
  lastRecordEnd: lsn,
  remoteConsistentLsn: lsn,
  layers: fc.array(layer, { maxLength: 6 }),
  history: fc.array(fc.record({ parent: fc.nat(), timeline: fc.nat(), switchLsn: lsn }), {
    maxLength: 3,
  }),
}) as fc.Arbitrary<TimelineIndex>;

describe("serializeTimelineIndex", () => {
  it("writes the same text as one JSON.stringify of the whole index, for any index (fast-check)", () => {
    fc.assert(
      fc.property(index, (ix) => {
        const text = serializeTimelineIndex(ix);
        assert.equal(text, reference(ix));
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
    assert.equal(serializeTimelineIndex(ix), reference(ix));
    // A valid index reads back as itself.
    const text = serializeTimelineIndex(ix);
    assert.equal(serializeTimelineIndex(parseTimelineIndex(text, "test")), text);
    entry.records = 4;
    entry.relFilter = `${"A".repeat(86)}==`;
    assert.equal(serializeTimelineIndex(ix), reference(ix));
    assert.match(serializeTimelineIndex(ix), /"records": 4,\n {6}"relFilter": "A+=="/);
  });
});
