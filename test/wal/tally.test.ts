/**
 * `WalDecoder.tally()` at a page boundary: the end it reports is the last counted record's,
 * never a page header read after it (synthetic WAL: a record that ends exactly at a page end).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { formatLsn, newRecordTally, WalDecodeError, WalDecoder } from "../../src/wal/index.js";
import { WalBuilder } from "../support/walbuilder.js";

const PAGE = 8192;
const START = 1n << 20n;

/** WAL whose record ends exactly at the end of the first page; returns the next page's LSN. */
function pageEndingWal(): { wal: Buffer; next: bigint } {
  const w = new WalBuilder({ startLsn: START, segmentSize: 1 << 20, prev: START - 64n });
  for (;;) {
    const room = PAGE - Number(w.pos % BigInt(PAGE));
    if (room >= 32 && room <= 200) {
      // Header 24, XLR_BLOCK_ID_DATA_SHORT and its length 2, then the data: `room` bytes.
      w.record({ rmid: 1, info: 0, mainData: randomBytes(room - 26) });
      break;
    }
    w.record({ rmid: 1, info: 0, mainData: randomBytes(60) });
  }
  assert.equal(w.pos % BigInt(PAGE), 0n, "the record ends at the page end");
  const next = w.pos;
  for (let i = 0; i < 10; i++) w.record({ rmid: 1, info: 0, mainData: randomBytes(60) });
  return { wal: w.bytes(), next };
}

/** Counts `wal` with or without tally(); returns the end reported and where decoding stopped. */
function count(wal: Buffer, useTally: boolean, before?: bigint) {
  const dec = new WalDecoder({ startLsn: START, segmentSize: 1 << 20, decodeBlocks: false });
  const t = newRecordTally();
  let error: string | undefined;
  let stoppedAt: bigint | undefined;
  dec.push(wal);
  dec.end();
  try {
    for (;;) {
      if (useTally && t.records > 0) dec.tally(t, before);
      const r = dec.next();
      if (r === undefined) break;
      if (before !== undefined && r.lsn >= before) {
        stoppedAt = r.lsn;
        break;
      }
      t.records++;
      t.endHi = r.endHi;
      t.endLo = r.endLo;
    }
  } catch (e) {
    if (!(e instanceof WalDecodeError)) throw e;
    error = e.message;
  }
  const end = formatLsn((BigInt(t.endHi) << 32n) | BigInt(t.endLo));
  return { records: t.records, end, error, stoppedAt, decodedUpTo: dec.decodedUpTo };
}

describe("WalDecoder.tally() at a page boundary", () => {
  it("reports the end of the last record, not a page header read after it", () => {
    const { wal, next } = pageEndingWal();
    // The record after the page header is zeroed: the end of WAL, right after that header.
    const zeroed = Buffer.from(wal);
    zeroed.fill(0, Number(next - START) + 24, Number(next - START) + 24 + 88);
    const reference = count(zeroed, false);
    assert.equal(reference.end, formatLsn(next));
    assert.match(reference.error ?? "", /invalid record length/);
    assert.deepEqual(count(zeroed, true), reference);
    // Stopped by `before` at the first record of the next page: the same.
    const first = next + 24n;
    const stopped = count(wal, false, first);
    assert.equal(stopped.stoppedAt, first);
    assert.deepEqual(count(wal, true, first), stopped);
  });
});
