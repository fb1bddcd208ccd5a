/**
 * The reader behind `waldump --stats`: chunks in order across files, files that end early, read
 * errors, and nothing left open or in flight after close().
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { defaultStatsThreads } from "../../src/service/cli/commands/waldump.js";
import { type Chunk, ChunkReader } from "../../src/service/cli/commands/waldump_reader.js";

const KiB = 1024;

/** File descriptors this process has open. */
function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

describe("ChunkReader", () => {
  let dir: string;
  const contents = [randomBytes(64 * KiB), randomBytes(40 * KiB), randomBytes(64 * KiB)];
  const files = contents.map((c, i) => ({ path: "", size: c.length, index: i }));

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "tideline-reader-"));
    contents.forEach((c, i) => {
      const path = join(dir, `f${i}`);
      writeFileSync(path, c);
      files[i]!.path = path;
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function readAll(reader: ChunkReader, recycle = true): Promise<Chunk[]> {
    const out: Chunk[] = [];
    try {
      for (let c = await reader.next(); c !== undefined; c = await reader.next()) {
        // Copy: the buffer goes back for later reads.
        out.push({ ...c, bytes: Buffer.from(c.bytes) });
        if (recycle) reader.recycle(c);
      }
    } finally {
      await reader.close();
    }
    return out;
  }

  it("hands out every file's chunks in order, from an offset, and closes what it opened", async () => {
    const fds = openFds();
    // 0: each chunk read when asked, on this thread.
    for (const ahead of [0, 1, 2, 4]) {
      const chunks = await readAll(new ChunkReader(files, 0, 16 * KiB, 16 * KiB, ahead));
      assert.deepEqual(
        chunks.map((c) => `${c.file}:${c.pos}`),
        [
          "0:16384",
          "0:32768",
          "0:49152",
          "1:0",
          "1:16384",
          "1:32768",
          "2:0",
          "2:16384",
          "2:32768",
          "2:49152",
        ],
        `ahead ${ahead}`,
      );
      const joined = Buffer.concat(chunks.map((c) => c.bytes));
      assert.ok(
        joined.equals(Buffer.concat([contents[0]!.subarray(16 * KiB), contents[1]!, contents[2]!])),
      );
      assert.ok(chunks.every((c) => !c.short));
      // The last chunk of the 40 KiB file is 8 KiB: as listed, so not short.
      assert.equal(chunks[5]!.bytes.length, 8 * KiB);
    }
    assert.equal(openFds(), fds, "no file left open");
  });

  it("skips the rest of a file that ends before its listed size", async () => {
    const listed = files.map((f, i) => (i === 1 ? { ...f, size: 96 * KiB } : f));
    const chunks = await readAll(new ChunkReader(listed, 1, 0, 16 * KiB, 2));
    assert.deepEqual(
      chunks.map((c) => `${c.file}:${c.pos}:${c.bytes.length}:${c.short}`),
      [
        "1:0:16384:false",
        "1:16384:16384:false",
        "1:32768:8192:true",
        "2:0:16384:false",
        "2:16384:16384:false",
        "2:32768:16384:false",
        "2:49152:16384:false",
      ],
    );
  });

  it("rejects next() with the error of a file it cannot open or read, and still closes", async () => {
    const fds = openFds();
    const missing = [files[0]!, { path: join(dir, "missing"), size: 16 * KiB }, files[2]!];
    const reader = new ChunkReader(missing, 0, 0, 32 * KiB, 1);
    const seen: number[] = [];
    await assert.rejects(
      async () => {
        try {
          for (let c = await reader.next(); c !== undefined; c = await reader.next()) {
            seen.push(c.file);
          }
        } finally {
          await reader.close();
        }
      },
      { code: "ENOENT" },
    );
    assert.ok(!seen.includes(2), "nothing after the file that failed");
    // Asked again, it fails again: nothing after a failed chunk is handed out.
    await assert.rejects(reader.next(), { code: "ENOENT" });
    const directory = [{ path: dir, size: 16 * KiB }];
    await assert.rejects(readAll(new ChunkReader(directory, 0, 0, 16 * KiB, 1)), {
      code: "EISDIR",
    });
    assert.equal(openFds(), fds, "no file left open");
  });

  it("reads into the buffers it is given back, and refuses bad sizes", async () => {
    const free: Buffer[] = [];
    const reader = new ChunkReader(files, 0, 0, 16 * KiB, 1, free);
    const buffers = new Set<Buffer>();
    try {
      for (let c = await reader.next(); c !== undefined; c = await reader.next()) {
        buffers.add(c.buffer);
        reader.recycle(c);
      }
    } finally {
      await reader.close();
    }
    // One read ahead at most and every buffer given back: two buffers serve all 11 chunks.
    assert.ok(buffers.size <= 2, `${buffers.size} buffers`);
    assert.throws(
      () => new ChunkReader(files, 0, 0, 0, 1),
      /chunkSize must be a positive integer, got 0/,
    );
    assert.throws(
      () => new ChunkReader(files, 0, 0, 4096, -1),
      /ahead must be a non-negative integer, got -1/,
    );
  });
});

describe("waldump --stats default threads", () => {
  it("uses two threads per three CPUs with the addon (one on two), one per CPU without, at most 8", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 6, 8, 12, 16, 64].map((n) => defaultStatsThreads(n, true)),
      [1, 1, 2, 2, 4, 5, 8, 8, 8],
    );
    assert.deepEqual(
      [1, 2, 3, 8, 12].map((n) => defaultStatsThreads(n, false)),
      [1, 2, 3, 8, 8],
    );
  });
});
