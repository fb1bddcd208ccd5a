import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { crc32c } from "@node-rs/crc32";
import fc from "fast-check";
import { crc32cRange } from "../../src/wal/crc32c.js";

describe("crc32cRange", () => {
  it("computes the CRC-32C check value", () => {
    assert.equal(crc32cRange(Buffer.from("123456789"), 0, 9), 0xe3069283);
    assert.equal(crc32cRange(Buffer.alloc(0), 0, 0), 0);
  });

  it("agrees with @node-rs/crc32 on every length, offset and chaining", () => {
    const data = randomBytes(4096);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (start, len, init) => {
          const end = start + len;
          assert.equal(
            crc32cRange(data, start, end, init),
            crc32c(data.subarray(start, end), init),
          );
        },
      ),
      { numRuns: 1000 },
    );
  });
});
