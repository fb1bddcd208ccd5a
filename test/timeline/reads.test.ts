/**
 * Reads, property-style: random ranges of raw WAL compared with the server's own segment
 * files, decoded-record ranges and block histories compared with an independent decode
 * of the same WAL, while the timeline's WAL sits in every kind of layer at once (fsynced
 * layer files, frozen layers held back from flushing, the open layer with a record still
 * streaming), then while those flushes run and more WAL streams in, then after a reopen.
 *
 * Seeded (fast-check), so a failure reproduces; fast-check prints the shrunk case.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type BlockKey,
  exportSegments,
  Timeline,
  writeLayerFile,
} from "../../src/timeline/index.js";
import {
  formatLsn,
  parseSegmentFileName,
  WalDecodeError,
  WalDecoder,
} from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const SEED = 20_261_126;
const LAYER_SIZE = 160 << 10; // deliberately not a multiple of pages or layer chunks
const HOLD_AFTER = 10; // layer files written before the flush is held back

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 8000) g",
  "CHECKPOINT",
  "UPDATE t SET v = 'y' WHERE id % 5 = 0",
  "SELECT pg_switch_wal()",
  "DELETE FROM t WHERE id % 7 = 0",
  "VACUUM t",
];

const ctx = testContext;

/** A record as an independent decode of the source sees it. */
interface RefRecord {
  lsn: bigint;
  end: bigint;
  /** Per block key touched: whether this record carries a base image of it (FPI applied, or init). */
  blocks: Map<string, boolean>;
}

const keyOf = (k: BlockKey) => `${k.spc}/${k.db}/${k.rel}/${k.fork}/${k.blk}`;
function parseKey(s: string): BlockKey {
  const [spc, db, rel, fork, blk] = s.split("/").map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  return { spc, db, rel, fork, blk };
}

describe("Timeline reads, property-style, against the server's segment files", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  let refs: RefRecord[];
  let blockKeys: string[];

  useWalSource(WORKLOAD, "reads", (s) => {
    ({ src, dir } = s);
    // The segment files are consecutive from src.start.
    const first = parseSegmentFileName(src.segments[0]!.name, src.segmentSize)!.segno;
    for (const [i, s] of src.segments.entries()) {
      assert.equal(parseSegmentFileName(s.name, src.segmentSize)!.segno, first + BigInt(i));
      assert.equal(s.bytes.length, src.segmentSize);
    }
    assert.equal(first * BigInt(src.segmentSize), src.start);
    // An independent decode for the block-level reference.
    const dec = new WalDecoder({ startLsn: src.start, segmentSize: src.segmentSize });
    dec.push(src.bytes);
    dec.end();
    refs = [];
    try {
      for (let r = dec.next(); r !== undefined; r = dec.next()) {
        const blocks = new Map<string, boolean>();
        for (const b of r.blocks) {
          const key = keyOf(b);
          const base = (b.hasImage && b.applyImage) || b.willInit;
          blocks.set(key, (blocks.get(key) ?? false) || base);
        }
        refs.push({ lsn: r.lsn, end: r.end, blocks });
      }
    } catch (error) {
      if (!(error instanceof WalDecodeError && error.endOfWal)) throw error;
    }
    assert.equal(refs.length, src.records.length);
    blockKeys = [...new Set(refs.flatMap((r) => [...r.blocks.keys()]))].sort();
  });

  /** `[from, to)` straight from the server's segment files. */
  function segmentBytes(from: bigint, to: bigint): Buffer {
    const out: Buffer[] = [];
    const size = BigInt(src.segmentSize);
    for (let at = from; at < to; ) {
      const seg = src.segments[Number((at - src.start) / size)]!;
      const off = (at - src.start) % size;
      const n = to - at < size - off ? to - at : size - off;
      out.push(seg.bytes.subarray(Number(off), Number(off + n)));
      at += n;
    }
    return Buffer.concat(out);
  }

  /** Ranges within `[lo, hi]`, biased to the interesting LSNs (layer and segment edges). */
  function rangeArb(lo: bigint, hi: bigint, edges: bigint[], maxLen: number) {
    const span = Number(hi - lo);
    const point = fc.oneof(
      fc.integer({ min: 0, max: span }).map((n) => lo + BigInt(n)),
      fc
        .tuple(fc.constantFrom(...edges), fc.integer({ min: -300, max: 300 }))
        .map(([e, d]) => e + BigInt(d)),
    );
    const len = fc.oneof(
      fc.integer({ min: 0, max: 64 }),
      fc.integer({ min: 0, max: 20_000 }),
      fc.integer({ min: 0, max: maxLen }),
    );
    return fc.tuple(point, len).map(([p, n]) => {
      const from = p < lo ? lo : p > hi ? hi : p;
      const to = from + BigInt(n) > hi ? hi : from + BigInt(n);
      return { from, to };
    });
  }

  /** The interesting LSNs of a timeline now: its layer edges, the open layer's start, segment starts. */
  function edgesOf(tl: Timeline): bigint[] {
    const edges = new Set<bigint>([
      src.start,
      tl.diskConsistentLsn,
      tl.lastRecordLsn,
      tl.streamEnd,
    ]);
    for (const l of tl.layerFiles) edges.add(l.end);
    edges.add(tl.streamEnd - BigInt(tl.openLayerBytes));
    for (let s = src.start; s < src.end; s += BigInt(src.segmentSize)) edges.add(s);
    return [...edges];
  }

  async function checkRawReads(tl: Timeline, hi: bigint, runs: number, seed: number) {
    const c = ctx();
    await fc.assert(
      fc.asyncProperty(rangeArb(src.start, hi, edgesOf(tl), 3 << 20), async ({ from, to }) => {
        const got = await tl.readWal(from, to, c);
        const want = segmentBytes(from, to);
        assert.equal(got.length, want.length);
        assert.ok(
          got.equals(want),
          `readWal(${formatLsn(from)}, ${formatLsn(to)}) differs from pg_wal`,
        );
        const pieced: Buffer[] = [];
        for await (const p of tl.walRange(from, to, c)) pieced.push(p);
        assert.ok(Buffer.concat(pieced).equals(want), "walRange pieces differ");
      }),
      { seed, numRuns: runs },
    );
  }

  async function checkRecordReads(tl: Timeline, hi: bigint, runs: number, seed: number) {
    const c = ctx();
    const complete = tl.lastRecordLsn;
    await fc.assert(
      fc.asyncProperty(
        rangeArb(src.start, hi, edgesOf(tl), 400_000),
        fc.option(fc.constantFrom(...blockKeys), { freq: 3 }),
        async ({ from, to }, key) => {
          const block = key === null ? undefined : parseKey(key);
          const got: string[] = [];
          for await (const r of tl.records(from, to, c, block)) got.push(r.lsn);
          const want = refs
            .filter((r) => r.lsn >= from && r.lsn < to && r.end <= complete)
            .filter((r) => key === null || r.blocks.has(key))
            .map((r) => formatLsn(r.lsn));
          assert.deepEqual(got, want, `records(${formatLsn(from)}, ${formatLsn(to)}, ${key})`);
        },
      ),
      { seed, numRuns: runs },
    );
  }

  async function checkBlockHistory(tl: Timeline, runs: number, seed: number) {
    const c = ctx();
    const complete = refs.filter((r) => r.end <= tl.lastRecordLsn);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...blockKeys),
        fc.integer({ min: 0, max: complete.length - 1 }),
        fc.integer({ min: 0, max: 2 }),
        async (key, i, nudge) => {
          // At a record's start, just after it, or just before it.
          const at = complete[i]!.lsn;
          const upTo = nudge === 0 ? at : nudge === 1 ? at + 1n : at - 1n;
          const touching = complete.filter((r) => r.lsn <= upTo && r.blocks.has(key));
          let base = -1;
          for (let j = touching.length - 1; j >= 0; j--) {
            if (touching[j]!.blocks.get(key)) {
              base = j;
              break;
            }
          }
          const want = touching.slice(Math.max(base, 0)).map((r) => formatLsn(r.lsn));
          const history = await tl.blockHistory(parseKey(key), upTo, c);
          assert.deepEqual(
            history.records.map((r) => r.lsn),
            want,
            `blockHistory(${key}, ${formatLsn(upTo)})`,
          );
          assert.equal(history.hasBaseImage, base >= 0);
        },
      ),
      { seed, numRuns: runs },
    );
  }

  /** Export of random [from, to): whole segments as pg_wal has them, the last one .partial and zero-padded. */
  async function checkExports(tl: Timeline, runs: number, seed: number) {
    const size = BigInt(src.segmentSize);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: src.bytes.length - 1 }),
        fc.integer({ min: 1, max: src.bytes.length }),
        async (a, b) => {
          const from = src.start + BigInt(Math.min(a, b - 1));
          const to = src.start + BigInt(Math.max(a + 1, b));
          const out = join(dir, `export-${n++}`);
          mkdirSync(out);
          const { files } = await exportSegments(tl, out, { from, to }, ctx());
          assert.deepEqual(readdirSync(out).sort(), [...files].sort(), "no temp files left");
          const first = (from - src.start) / size;
          const last = (to - 1n - src.start) / size;
          assert.equal(files.length, Number(last - first) + 1);
          for (const [i, name] of files.entries()) {
            const seg = src.segments[Number(first) + i]!;
            const bytes = readFileSync(join(out, name));
            assert.equal(bytes.length, src.segmentSize);
            const segStart = src.start + (first + BigInt(i)) * size;
            if (segStart + size <= to) {
              assert.equal(name, seg.name);
              assert.ok(bytes.equals(seg.bytes), `${name} is byte-exact`);
            } else {
              assert.equal(name, `${seg.name}.partial`);
              const used = Number(to - segStart);
              assert.ok(bytes.subarray(0, used).equals(seg.bytes.subarray(0, used)));
              assert.ok(
                bytes.subarray(used).every((x) => x === 0),
                "zero-padded",
              );
            }
          }
          rmSync(out, { recursive: true, force: true });
        },
      ),
      { seed, numRuns: runs },
    );
  }

  it("raw WAL, records, block histories and exports across layer files, frozen layers and the open layer", {
    timeout: 120_000,
  }, async (t) => {
    let written = 0;
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const writeLayer: typeof writeLayerFile = async (d, layer, meta, token) => {
      if (++written > HOLD_AFTER) await token.race(held);
      return writeLayerFile(d, layer, meta, token);
    };
    const dataDir = join(dir, "mixed");
    const tl = await Timeline.create({
      dataDir,
      id: "reads",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: LAYER_SIZE,
      maxFrozenLayers: 1000,
      maxFrozenBytes: 1 << 30,
      writeLayer,
    });
    try {
      // Stop a few bytes into a record past 85 % of the source: that record is still streaming.
      const k = src.records.findIndex(
        (r) => r.lsn >= src.start + (BigInt(src.bytes.length) * 85n) / 100n && r.end - r.lsn > 40n,
      );
      const partial = src.records[k]!.lsn + 20n;
      const c = ctx();
      for (const p of pieces(src, src.start, partial, prng(3))) await tl.ingest(p.lsn, p.bytes, c);
      // Wait until the flush task is held at the layer after HOLD_AFTER.
      while (tl.layerFiles.length < HOLD_AFTER) await new Promise((r) => setTimeout(r, 5));
      assert.equal(tl.layerFiles.length, HOLD_AFTER);
      assert.ok(tl.frozenLayers >= 3, `frozen layers in memory: ${tl.frozenLayers}`);
      assert.ok(tl.openLayerBytes > 0);
      assert.equal(tl.lastRecordLsn, src.records[k - 1]!.end);
      assert.equal(tl.streamEnd, partial);
      t.diagnostic(
        `disk up to ${formatLsn(tl.diskConsistentLsn)} (${tl.layerFiles.length} files), ${tl.frozenLayers} frozen, open ${tl.openLayerBytes} bytes up to ${formatLsn(partial)}`,
      );

      // Ranges outside what it holds are refused, not answered short.
      await assert.rejects(tl.readWal(src.start, partial + 1n, c), RangeError);
      await assert.rejects(tl.readWal(src.start - 1n, src.start + 10n, c), RangeError);
      await assert.rejects(tl.readWal(src.start + 10n, src.start + 9n, c), RangeError);

      await checkRawReads(tl, partial, 150, SEED);
      await checkRecordReads(tl, partial, 40, SEED + 1);
      await checkBlockHistory(tl, 40, SEED + 2);

      // Now let the flushes run and the rest stream in while reads go on (below what was
      // complete before, which every layer state change must keep readable).
      const stable = tl.lastRecordLsn;
      release();
      const rest = (async () => {
        for (const p of pieces(src, partial, src.end, prng(4))) await tl.ingest(p.lsn, p.bytes, c);
        await tl.flush(c);
      })();
      await checkRawReads(tl, stable, 60, SEED + 3);
      await checkRecordReads(tl, stable, 15, SEED + 4);
      await rest;
      assert.equal(tl.diskConsistentLsn, src.end);
      await tl.shutdown("freeze-and-flush");
    } finally {
      release();
      await tl.shutdown("hard");
    }

    // All in layer files, opened read-only as `export` would.
    const reopened = await Timeline.open({ dataDir, id: "reads", readOnly: true });
    try {
      assert.equal(reopened.diskConsistentLsn, src.end);
      await checkRawReads(reopened, src.end, 100, SEED + 5);
      await checkRecordReads(reopened, src.end, 30, SEED + 6);
      await checkBlockHistory(reopened, 40, SEED + 7);
      await checkExports(reopened, 12, SEED + 8);
    } finally {
      await reopened.shutdown("hard");
    }
  });
});
