/**
 * The pooled WAL memory: slabs are reused only when nothing refers to them, and a freeze
 * hands the chunks after its cut point over with their references (reads of pooled layers
 * in a timeline are in pooled_reads.test.ts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  InMemoryLayer,
  WAL_SLAB_SIZE,
  WalBufferPool,
  walBuffers,
} from "../../src/timeline/index.js";

describe("WalBufferPool", () => {
  it("reuses a slab only once it is sealed and every view of it is released", () => {
    const pool = new WalBufferPool(4);
    const quarter = WAL_SLAB_SIZE / 4;
    const a = pool.copy(Buffer.alloc(quarter, 1));
    const b = pool.copy(Buffer.alloc(quarter, 2));
    assert.equal(a.buffer, b.buffer, "cut from one slab");
    pool.retain(a); // a second holder of a
    pool.release(a);
    pool.release(b);
    const c = pool.copy(Buffer.alloc(quarter, 3));
    const d = pool.copy(Buffer.alloc(quarter, 4)); // the slab is now full
    const next = pool.copy(Buffer.alloc(8, 5)); // seals it and takes a new one
    assert.notEqual(next.buffer, a.buffer);
    pool.release(c);
    pool.release(d);
    assert.equal(pool.stats.free, 0, "a is still held");
    assert.equal(a[0], 1, "a kept its bytes");
    pool.release(a);
    assert.equal(pool.stats.free, 1, "now the first slab is free");
    // The current slab fills up; the next one is the first slab again.
    pool.copy(Buffer.alloc(quarter, 6));
    pool.copy(Buffer.alloc(quarter, 6));
    pool.copy(Buffer.alloc(quarter, 6));
    const reused = pool.copy(Buffer.alloc(quarter, 7));
    assert.equal(reused.buffer, a.buffer);
    assert.equal(pool.stats.reused, 1);
    // A slab still in use counts its releases.
    const x = pool.copy(Buffer.alloc(8));
    pool.release(x);
    pool.release(reused);
    assert.throws(() => pool.release(x), TypeError);
  });

  it("ignores memory it did not hand out, and does not pool pieces over a quarter slab", () => {
    const pool = new WalBufferPool();
    const foreign = Buffer.alloc(100);
    pool.retain(foreign);
    pool.release(foreign);
    pool.release(foreign);
    const big = pool.copy(Buffer.alloc(WAL_SLAB_SIZE / 4 + 1, 9));
    assert.equal(big.length, WAL_SLAB_SIZE / 4 + 1);
    assert.equal(big[100], 9);
    pool.release(big); // not pooled: a no-op
    assert.throws(() => new WalBufferPool(-1), RangeError);
  });

  it("never hands out memory a live view still uses, whatever the order (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant("copy"), size: fc.integer({ min: 1, max: 300_000 }) }),
            fc.record({ op: fc.constant("release"), pick: fc.nat() }),
            fc.record({ op: fc.constant("retain"), pick: fc.nat() }),
          ),
          { maxLength: 120 },
        ),
        (ops) => {
          const pool = new WalBufferPool(3);
          // Each live view with its fill byte and the references it holds.
          const live: { view: Buffer; fill: number; refs: number }[] = [];
          let fill = 0;
          for (const o of ops) {
            if (o.op === "copy") {
              fill = (fill + 1) & 0xff;
              live.push({ view: pool.copy(Buffer.alloc(o.size, fill)), fill, refs: 1 });
            } else if (live.length > 0) {
              const i = o.pick % live.length;
              const v = live[i]!;
              if (o.op === "retain") {
                pool.retain(v.view);
                v.refs++;
              } else {
                pool.release(v.view);
                if (--v.refs === 0) live.splice(i, 1);
              }
            }
            for (const v of live) {
              assert.ok(
                v.view[0] === v.fill && v.view[v.view.length - 1] === v.fill,
                "a live view kept its bytes",
              );
            }
          }
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe("pooled WAL in an in-memory layer", () => {
  it("a freeze hands the bytes after the cut point to the new layer without letting their slab go", () => {
    // 11 pieces of 200 kB: slab 1 holds pieces 1-5, slab 2 pieces 6-10, slab 3 piece 11.
    // The cut falls inside piece 5, so slab 2 holds only whole chunks after it: if their
    // references were dropped before the new layer took them, slab 2 would be reused.
    const layer = new InMemoryLayer(0n);
    const sources: Buffer[] = [];
    for (let i = 0; i < 11; i++) {
      const src = Buffer.alloc(200_000, i + 1);
      const view = walBuffers.copy(src);
      layer.append(view);
      walBuffers.release(view); // as the WAL receiver's handler does after ingest
      sources.push(src);
    }
    const at = 900_000n;
    const rest = layer.freezeAt(at);
    layer.dispose();
    const junk = Array.from({ length: 12 }, () => walBuffers.copy(Buffer.alloc(250_000, 0xee)));
    try {
      const expected = Buffer.concat(sources).subarray(Number(at));
      assert.equal(rest.size, expected.length);
      assert.ok(rest.read(at, rest.end).equals(expected), "the new layer's bytes are intact");
      // Dropping the tail (as a reconnect does) gives it back: nothing is released twice.
      rest.truncate(at + 10n);
      rest.dispose();
    } finally {
      for (const j of junk) walBuffers.release(j);
    }
  });
});
