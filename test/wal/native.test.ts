import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { arch, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { crc32c } from "@node-rs/crc32";
import fc from "fast-check";
import { crc32cRange, recordCrc32c } from "../../src/wal/crc32c.js";
import { crcImplementation, nativeCrc } from "../../src/wal/native.js";

const built = existsSync(new URL("../../../native/build/crc32c.node", import.meta.url));
const native = nativeCrc();
const required = process.env.TIDELINE_REQUIRE_NATIVE === "1";

describe("the native CRC-32C addon", () => {
  it("is loaded when built (and is built where CI requires it)", (t) => {
    if (required) {
      assert.ok(built, "TIDELINE_REQUIRE_NATIVE=1 but native/build/crc32c.node is missing");
      assert.ok(native !== undefined, `TIDELINE_REQUIRE_NATIVE=1 but ${crcImplementation()}`);
    }
    assert.equal(native !== undefined, built && process.env.TIDELINE_NATIVE !== "0");
    t.diagnostic(`CRC-32C: ${crcImplementation()}`);
    if (native !== undefined && arch() === "x64") {
      const sse42 = /\bsse4_2\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
      assert.equal(native.impl, sse42 ? "sse4.2" : "table");
    }
  });

  it("agrees with @node-rs/crc32 on every length, offset, chaining and view (fast-check)", (t) => {
    if (native === undefined) return t.skip("addon not built");
    const backing = randomBytes(8192);
    fc.assert(
      fc.property(
        fc.nat(64),
        fc.nat(3000),
        fc.nat(3000),
        fc.integer({ min: 0, max: 0xffffffff }),
        (viewAt, start, len, init) => {
          const view = backing.subarray(viewAt, viewAt + 6000);
          const expected = crc32c(view.subarray(start, start + len), init);
          assert.equal(native.crc32c(view, start, start + len, init), expected);
          assert.equal(native.crc32cPortable(view, start, start + len, init), expected);
          assert.equal(crc32cRange(view, start, start + len, init), expected);
        },
      ),
      { numRuns: 2000 },
    );
    assert.equal(native.crc32c(Buffer.from("123456789"), 0, 9, 0), 0xe3069283);
    // The lengths where the implementation changes strategy, exactly.
    for (const len of [0, 1, 7, 8, 255, 256, 767, 768, 769, 24575, 24576, 24577, 24576 + 768]) {
      for (const at of [0, 1, 3]) {
        const big = randomBytes(len + 8);
        assert.equal(
          native.crc32c(big, at, at + len, 0x12345678),
          crc32c(big.subarray(at, at + len), 0x12345678),
          `length ${len} at ${at}`,
        );
      }
    }
  });

  it("agrees on long inputs, where three interleaved chains are joined (fast-check)", (t) => {
    if (native === undefined) return t.skip("addon not built");
    const backing = randomBytes(200_000);
    fc.assert(
      fc.property(
        fc.nat(4096),
        fc.integer({ min: 700, max: 190_000 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (start, len, init) => {
          const expected = crc32c(backing.subarray(start, start + len), init);
          assert.equal(native.crc32c(backing, start, start + len, init), expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("computes WAL record CRCs one at a time and in a batch, as the JavaScript does", (t) => {
    if (native === undefined) return t.skip("addon not built");
    const buf = randomBytes(1 << 16);
    const offsets: number[] = [];
    let pos = 8;
    for (let i = 0; pos < buf.length - 3000; i++) {
      const len = 24 + ((i * 7919) % (i % 10 === 0 ? 2900 : 120));
      buf.writeUInt32LE(len, pos);
      offsets.push(pos);
      pos += (len + 7) & ~7;
    }
    const offs = Int32Array.from(offsets);
    const out = new Int32Array(offs.length);
    native.recordCrcs(buf, offs, offs.length, out);
    for (let i = 0; i < offs.length; i++) {
      const o = offs[i]!;
      const expected = recordCrc32c(buf, o, buf.readUInt32LE(o));
      assert.equal(out[i]! >>> 0, expected, `record ${i} at ${o}`);
      assert.equal(native.recordCrc(buf, o), expected);
    }
  });

  it("rejects records that do not lie in the buffer, and arguments of the wrong type", (t) => {
    if (native === undefined) return t.skip("addon not built");
    const buf = Buffer.alloc(100);
    buf.writeUInt32LE(90, 16); // ends at 106 > 100
    buf.writeUInt32LE(20, 40); // shorter than a header
    buf.writeUInt32LE(60, 0);
    const out = new Int32Array(4);
    assert.throws(() => native.recordCrc(buf, 16), RangeError);
    assert.throws(() => native.recordCrc(buf, 40), RangeError);
    assert.throws(() => native.recordCrc(buf, 90), RangeError);
    assert.throws(() => native.recordCrcs(buf, Int32Array.of(0, 16), 2, out), RangeError);
    assert.throws(() => native.recordCrcs(buf, Int32Array.of(0), 2, out), RangeError);
    assert.throws(() => native.recordCrcs(buf, Int32Array.of(-8), 1, out), RangeError);
    native.recordCrcs(buf, Int32Array.of(0), 1, out);
    assert.equal(out[0]! >>> 0, recordCrc32c(buf, 0, 60));
    assert.throws(() => native.crc32c(buf, 10, 101, 0), RangeError);
    assert.throws(() => native.crc32c(buf, 10, 5, 0), RangeError);
    assert.throws(() => native.crc32c("abc" as unknown as Buffer, 0, 1, 0), TypeError);
    assert.throws(() => native.crc32c(buf, -1, 5, 0), TypeError);
    assert.throws(() => native.crc32c(buf, Number.NaN, 5, 0), TypeError);
    assert.throws(() => native.crc32c(buf, 0, 8.5, 0), TypeError);
    assert.throws(() => native.crc32c(buf, 0, Number.POSITIVE_INFINITY, 0), TypeError);
    assert.throws(() => native.recordCrcs(buf, Int32Array.of(0), Number.NaN, out), TypeError);
    assert.throws(() => native.recordCrcs(buf, [0] as unknown as Int32Array, 1, out), TypeError);
  });
  it("writes a buffer at a position on the pool (with or without starting its writeback), and reports errors", async (t) => {
    if (native === undefined) return t.skip("addon not built");
    const write = (fd: number, position: number, buf: Uint8Array, wb: boolean) =>
      new Promise<number>((resolve, reject) =>
        native.writeAsync(fd, position, buf, wb, (error, n) =>
          error === null ? resolve(n!) : reject(error),
        ),
      );
    const dir = mkdtempSync(join(tmpdir(), "tideline-writeasync-"));
    try {
      const path = join(dir, "f");
      const fd = openSync(path, "w");
      const a = randomBytes(3 << 20);
      const b = randomBytes(1000);
      try {
        assert.equal(await write(fd, 0, a, true), a.length);
        assert.equal(await write(fd, a.length + 24, b, false), b.length);
        assert.equal(await write(fd, 5, new Uint8Array(0), true), 0);
      } finally {
        closeSync(fd);
      }
      const want = Buffer.concat([a, Buffer.alloc(24), b]);
      assert.ok(readFileSync(path).equals(want));
      // A descriptor not open for writing: the error names the call and the errno.
      const ro = openSync(path, "r");
      try {
        await assert.rejects(write(ro, 0, b, true), (e: NodeJS.ErrnoException) => {
          assert.equal(e.code, "EBADF");
          assert.equal(e.syscall, "pwrite");
          assert.ok(e.errno !== undefined && e.errno < 0);
          return true;
        });
      } finally {
        closeSync(ro);
      }
      assert.throws(() => native.writeAsync(-1, 0, b, true, () => {}), TypeError);
      assert.throws(() => native.writeAsync(1, 0.5, b, true, () => {}), TypeError);
      assert.throws(() => native.writeAsync(1, 0, b, 1 as unknown as boolean, () => {}), TypeError);
      assert.throws(() => native.writeAsync(1, 0, b, true, undefined as never), TypeError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
