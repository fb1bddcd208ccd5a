import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { crc32c } from "@node-rs/crc32";
import fc from "fast-check";
import { InMemoryLayer, LAYER_CHUNK_SIZE } from "../../src/timeline/index.js";

/** The chunk CRCs a layer file of `bytes` holds. */
function expectedCrcs(bytes: Buffer): number[] {
  const out: number[] = [];
  for (let at = 0; at < bytes.length; at += LAYER_CHUNK_SIZE)
    out.push(crc32c(bytes.subarray(at, at + LAYER_CHUNK_SIZE)));
  return out;
}

function crcs(layer: InMemoryLayer): number[] {
  const out: number[] = [];
  for (let i = 0; i * LAYER_CHUNK_SIZE < layer.size; i++) out.push(layer.chunkCrc(i));
  return out;
}

describe("InMemoryLayer chunk CRCs", () => {
  it("equal the CRCs of its bytes, after any appends, freezes and truncations", () => {
    const source = Buffer.alloc(3 * LAYER_CHUNK_SIZE + 12_345);
    for (let i = 0; i < source.length; i++) source[i] = (i * 2654435761) >>> 24;
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 900_000 }), { minLength: 1, maxLength: 12 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (sizes, freezeAt, truncateAt) => {
          const start = 0x1000000n;
          let layer = new InMemoryLayer(start);
          let at = 0;
          for (const n of sizes) {
            if (at >= source.length) break;
            const piece = source.subarray(at, Math.min(source.length, at + n));
            layer.append(piece);
            at += piece.length;
          }
          assert.deepEqual(crcs(layer), expectedCrcs(source.subarray(0, at)));
          // Freeze at some point: both halves are right.
          const cut = Math.floor(at * freezeAt);
          const rest = layer.freezeAt(start + BigInt(cut));
          assert.deepEqual(crcs(layer), expectedCrcs(source.subarray(0, cut)));
          assert.deepEqual(crcs(rest), expectedCrcs(source.subarray(cut, at)));
          // Truncate the rest, then append again.
          layer = rest;
          const keep = Math.floor((at - cut) * truncateAt);
          layer.truncate(start + BigInt(cut + keep));
          assert.deepEqual(crcs(layer), expectedCrcs(source.subarray(cut, cut + keep)));
          const more = source.subarray(cut + keep, Math.min(source.length, cut + keep + 1_500_000));
          layer.append(more);
          assert.deepEqual(
            crcs(layer),
            expectedCrcs(source.subarray(cut, cut + keep + more.length)),
          );
        },
      ),
      { seed: 7, numRuns: 60 },
    );
  });
});
