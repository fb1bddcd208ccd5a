import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  formatForMagic,
  formatLsn,
  formatLsnPadded,
  historyFileName,
  isPartialSegmentFileName,
  isSegmentFileName,
  isValidSegmentSize,
  lsnAdd,
  lsnAlign,
  lsnDiff,
  lsnFromParts,
  lsnParts,
  MAX_LSN,
  majorVersionForMagic,
  pageOffset,
  pageStart,
  parseHistoryFileName,
  parseLsn,
  parseSegmentFileName,
  previousSegmentNumber,
  segmentFileName,
  segmentFileNameForLsn,
  segmentNumber,
  segmentOffset,
  segmentStart,
  segmentStartLsn,
  segmentsPerXLogId,
  walFormat,
} from "../../src/wal/index.js";

const MiB = 1024 * 1024;

describe("LSN text", () => {
  it("parses and prints as PostgreSQL does", () => {
    assert.equal(parseLsn("16/B374D848"), 0x16b374d848n);
    assert.equal(formatLsn(0x16b374d848n), "16/B374D848");
    assert.equal(formatLsn(0x1557c28n), "0/1557C28");
    assert.equal(formatLsnPadded(0x1557c28n), "0/01557C28");
    assert.equal(formatLsn(0n), "0/0");
    assert.equal(parseLsn("0/01557C28"), 0x1557c28n);
    assert.equal(parseLsn("ffffffff/ffffffff"), MAX_LSN);
    assert.equal(formatLsn(MAX_LSN), "FFFFFFFF/FFFFFFFF");
  });

  it("rejects malformed text with an error naming it", () => {
    for (const bad of [
      "",
      "16",
      "16/",
      "/1",
      "1/2/3",
      "123456789/0",
      "0/123456789",
      "G/0",
      " 0/0",
      "0/0 ",
    ]) {
      assert.throws(
        () => parseLsn(bad),
        (e: unknown) => e instanceof RangeError && e.message.includes(JSON.stringify(bad)),
      );
    }
    assert.throws(() => parseLsn(5 as unknown as string), TypeError);
  });

  it("validates the bigint range", () => {
    assert.throws(() => formatLsn(-1n), RangeError);
    assert.throws(() => formatLsn(MAX_LSN + 1n), /-1|18446744073709551616/);
    assert.throws(() => formatLsn(5 as unknown as bigint), TypeError);
    assert.throws(() => lsnAdd(MAX_LSN, 1), RangeError);
    assert.throws(() => lsnAdd(0n, -1), RangeError);
  });

  it("round-trips every 64-bit value", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: MAX_LSN }), (v) => {
        assert.equal(parseLsn(formatLsn(v)), v);
        assert.equal(parseLsn(formatLsnPadded(v)), v);
        const [hi, lo] = lsnParts(v);
        assert.equal(lsnFromParts(hi, lo), v);
      }),
      { numRuns: 500 },
    );
    // lsnFromParts takes a shortcut below 2^53: both sides of that edge.
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 1n << 54n }), (v) => {
        const [hi, lo] = lsnParts(v);
        assert.equal(lsnFromParts(hi, lo), v);
      }),
      { numRuns: 500 },
    );
    for (const v of [0n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 0x1f_ffff_ffff_ffffn]) {
      const [hi, lo] = lsnParts(v);
      assert.equal(lsnFromParts(hi, lo), v);
    }
  });

  it("crosses the 32-bit boundary", () => {
    const a = parseLsn("FFFFFFFF/FFFFE000");
    assert.equal(formatLsn(lsnAdd(parseLsn("0/FFFFE000"), 8192)), "1/0");
    assert.equal(formatLsn(lsnAdd(parseLsn("7/FFFFFFF8"), 8)), "8/0");
    assert.equal(lsnDiff(parseLsn("1/0"), parseLsn("0/FFFFFFF8")), 8n);
    assert.equal(formatLsnPadded(a), "FFFFFFFF/FFFFE000");
    assert.equal(formatLsn(lsnAdd(a, 8191)), "FFFFFFFF/FFFFFFFF");
    assert.equal(formatLsn(lsnAlign(parseLsn("0/FFFFFFF9"))), "1/0");
  });
});

describe("segment arithmetic", () => {
  it("checks segment sizes", () => {
    for (let s = MiB; s <= 1024 * MiB; s *= 2) assert.ok(isValidSegmentSize(s));
    for (const s of [0, MiB / 2, 3 * MiB, 2048 * MiB, 1.5]) assert.ok(!isValidSegmentSize(s));
    assert.throws(() => segmentNumber(0n, 3 * MiB), /invalid WAL segment size 3145728/);
  });

  it("computes numbers, offsets and starts", () => {
    const seg16 = 16 * MiB;
    const lsn = parseLsn("1/2002028");
    assert.equal(segmentNumber(lsn, seg16), 258n);
    assert.equal(segmentOffset(lsn, seg16), 0x2028);
    assert.equal(pageOffset(lsn), 0x28);
    assert.equal(formatLsn(pageStart(lsn)), "1/2002000");
    assert.equal(formatLsn(segmentStart(lsn, seg16)), "1/2000000");
    assert.equal(formatLsn(segmentStartLsn(258n, seg16)), "1/2000000");
    assert.equal(previousSegmentNumber(parseLsn("0/2000000"), seg16), 1n);
    assert.equal(segmentsPerXLogId(seg16), 256);
    assert.equal(segmentsPerXLogId(MiB), 4096);
    assert.equal(segmentsPerXLogId(1024 * MiB), 4);
  });

  it("names segment files both ways", () => {
    assert.equal(segmentFileName(1, 1n, 16 * MiB), "000000010000000000000001");
    assert.equal(segmentFileName(1, 258n, 16 * MiB), "000000010000000100000002");
    assert.equal(segmentFileName(0xa, 4097n, MiB), "0000000A0000000100000001");
    assert.equal(
      segmentFileNameForLsn(1, parseLsn("FFFFFFFF/FFFFE000"), 16 * MiB),
      "00000001FFFFFFFF000000FF",
    );
    assert.equal(
      segmentFileNameForLsn(1, parseLsn("FFFFFFFF/FFFFE000"), MiB),
      "00000001FFFFFFFF00000FFF",
    );
    assert.equal(segmentFileNameForLsn(2, parseLsn("1/0"), 64 * MiB), "000000020000000100000000");
    assert.deepEqual(parseSegmentFileName("000000010000000100000002", 16 * MiB), {
      timeline: 1,
      segno: 258n,
      partial: false,
    });
    assert.deepEqual(parseSegmentFileName("0000000300000000000000FF.partial", 16 * MiB), {
      timeline: 3,
      segno: 255n,
      partial: true,
    });
    assert.equal(parseSegmentFileName("00000002.history", 16 * MiB), undefined);
    assert.throws(() => parseSegmentFileName("000000010000000000000100", 16 * MiB), /impossible/);
    assert.ok(isSegmentFileName("000000010000000000000001"));
    assert.ok(!isSegmentFileName("000000010000000000000001.partial"));
    assert.ok(!isSegmentFileName("00000001000000000000000a"));
    assert.ok(isPartialSegmentFileName("000000010000000000000001.partial"));
    assert.equal(historyFileName(2), "00000002.history");
    assert.equal(parseHistoryFileName("0000000A.history"), 10);
    assert.equal(parseHistoryFileName("0000000A.partial"), undefined);
    assert.throws(() => segmentFileName(0, 1n, 16 * MiB), RangeError);
  });

  it("round-trips names for every segment size", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 }),
        fc.integer({ min: 1, max: 0xffffffff }),
        fc.bigInt({ min: 0n, max: MAX_LSN }),
        (sizeExp, tli, lsn) => {
          const size = MiB << sizeExp;
          const name = segmentFileNameForLsn(tli, lsn, size);
          const parsed = parseSegmentFileName(name, size);
          assert.equal(parsed?.timeline, tli);
          assert.equal(parsed?.segno, segmentNumber(lsn, size));
          assert.equal(segmentStartLsn(parsed.segno, size), segmentStart(lsn, size));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("version table", () => {
  it("maps page magics to major versions", () => {
    assert.equal(majorVersionForMagic(0xd110), 15);
    assert.equal(majorVersionForMagic(0xd113), 16);
    assert.equal(majorVersionForMagic(0xd116), 17);
    assert.equal(majorVersionForMagic(0xd118), 18);
    assert.equal(formatForMagic(0xd111), undefined);
    assert.equal(walFormat(18).pageInfo.firstIsOverwriteContrecord, 0x8);
    assert.equal(walFormat(16).maxRecordSize, 1020 * MiB);
    assert.throws(() => walFormat(14), /unsupported PostgreSQL major version 14/);
  });
});
