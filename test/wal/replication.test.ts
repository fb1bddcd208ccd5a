import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type Lsn,
  parseReplicationMessage,
  ReplicationProtocolError,
  ReplicationStreamSplitter,
} from "../../src/wal/index.js";

/** A backend message: type byte, int32 length (counting itself), body. */
function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function xlogData(start: Lsn, walEnd: Lsn, data: Buffer): Buffer {
  const h = Buffer.alloc(25);
  h.write("w");
  h.writeBigUInt64BE(start, 1);
  h.writeBigUInt64BE(walEnd, 9);
  h.writeBigInt64BE(123n, 17);
  return message("d", Buffer.concat([h, data]));
}

function keepalive(walEnd: Lsn, reply: boolean): Buffer {
  const k = Buffer.alloc(18);
  k.write("k");
  k.writeBigUInt64BE(walEnd, 1);
  k.writeBigInt64BE(456n, 9);
  k[17] = reply ? 1 : 0;
  return message("d", k);
}

interface Seen {
  wal: Buffer[];
  walAt: Lsn[];
  events: string[];
  other: Buffer[];
}

function splitAll(bytes: Buffer, cuts: number[]): Seen {
  const seen: Seen = { wal: [], walAt: [], events: [], other: [] };
  let next: Lsn | undefined;
  const s = new ReplicationStreamSplitter({
    wal: (lsn, data, walEnd) => {
      // Pieces of one message continue each other.
      if (next !== undefined && lsn !== next) seen.events.push(`gap ${lsn}`);
      next = lsn + BigInt(data.length);
      seen.wal.push(data);
      seen.walAt.push(lsn);
      seen.events.push(`w ${walEnd}`);
    },
    keepalive: (walEnd, sendTime, reply) => seen.events.push(`k ${walEnd} ${sendTime} ${reply}`),
    other: (b) => seen.other.push(Buffer.from(b)),
  });
  let at = 0;
  for (const c of [...cuts, bytes.length].sort((a, b) => a - b)) {
    if (c > at) s.push(bytes.subarray(at, c));
    at = Math.max(at, c);
  }
  return seen;
}

describe("ReplicationStreamSplitter", () => {
  const wal1 = Buffer.alloc(3000, 7);
  const wal2 = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i & 0xff));
  const copyDone = message("c", Buffer.alloc(0));
  const complete = message("C", Buffer.from("START_STREAMING\0"));
  const stream = Buffer.concat([
    message("W", Buffer.from([0, 0, 0])), // CopyBothResponse
    xlogData(0x1000000n, 0x2000000n, wal1),
    keepalive(0x2000000n, true),
    xlogData(0x1000000n + 3000n, 0x2000100n, wal2),
    keepalive(0x2000100n, false),
    copyDone,
    complete,
  ]);
  const expectedOther = Buffer.concat([message("W", Buffer.from([0, 0, 0])), copyDone, complete]);

  it("hands out the WAL and keepalives, and every other message byte for byte, however the bytes are split", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(stream.length), { maxLength: 40 }), (cuts) => {
        const seen = splitAll(stream, cuts);
        assert.deepEqual(Buffer.concat(seen.wal), Buffer.concat([wal1, wal2]));
        assert.equal(seen.walAt[0], 0x1000000n);
        assert.deepEqual(
          seen.events.filter((e) => e.startsWith("k") || e.startsWith("gap")),
          ["k 33554432 456 true", "k 33554688 456 false"],
        );
        assert.deepEqual(Buffer.concat(seen.other), expectedOther);
      }),
      { numRuns: 300 },
    );
  });

  it("does not copy WAL that lies in one pushed buffer", () => {
    const msg = xlogData(0x1000000n, 0x1000000n, wal1);
    let got: Buffer | undefined;
    const s = new ReplicationStreamSplitter({
      wal: (_lsn, data) => {
        got = data;
      },
      keepalive: () => {},
      other: () => {},
    });
    s.push(msg);
    assert.equal(got?.buffer, msg.buffer);
    assert.equal(got?.byteOffset, msg.byteOffset + 5 + 25);
  });

  it("passes everything through unparsed once told to", () => {
    const other: Buffer[] = [];
    const s = new ReplicationStreamSplitter({
      wal: () => assert.fail("no WAL expected"),
      keepalive: () => assert.fail("no keepalive expected"),
      other: (b) => other.push(b),
    });
    const ready = message("Z", Buffer.from("I"));
    s.push(Buffer.concat([copyDone, ready.subarray(0, 2)]));
    s.passThrough();
    s.push(ready.subarray(2));
    const kept = keepalive(1n, true);
    s.push(kept);
    assert.deepEqual(Buffer.concat(other), Buffer.concat([copyDone, ready, kept]));
  });

  it("rejects what parseReplicationMessage rejects, with the same message", () => {
    const bad = [
      Buffer.from("x"),
      Buffer.alloc(0),
      Buffer.from("w123"),
      Buffer.concat([Buffer.from("k"), Buffer.alloc(18)]),
      (() => {
        const w = Buffer.alloc(26);
        w.write("w");
        w.writeBigUInt64BE(0xffff_ffff_ffff_ffffn, 1);
        return w;
      })(),
    ];
    for (const payload of bad) {
      let expected: string | undefined;
      try {
        parseReplicationMessage(payload);
      } catch (e) {
        expected = (e as Error).message;
      }
      assert.ok(expected !== undefined);
      for (const cut of [1, 3, 6, payload.length + 4]) {
        const bytes = message("d", payload);
        assert.throws(
          () => splitAll(bytes, [cut]),
          (e: unknown) => e instanceof ReplicationProtocolError && e.message === expected,
        );
      }
    }
  });

  it("rejects an impossible message length", () => {
    const s = new ReplicationStreamSplitter({ wal() {}, keepalive() {}, other() {} });
    assert.throws(() => s.push(Buffer.from([0x64, 0, 0, 0, 3])), ReplicationProtocolError);
  });
});
