import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { writeFully } from "../../src/timeline/index.js";

describe("writeFully", () => {
  const dir = mkdtempSync(join(tmpdir(), "tideline-fsutil-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const parts = [
    Buffer.from("head-"),
    Buffer.alloc(0),
    new Uint8Array(Buffer.from("middle-")),
    Buffer.from("x".repeat(70_000)),
    Buffer.from("-tail"),
  ];
  const expected = Buffer.concat([Buffer.alloc(10), ...parts]);

  it("writes every part in order at the position", async () => {
    const path = join(dir, "all");
    const file = await open(path, "w");
    try {
      await writeFully(file, parts, 10);
    } finally {
      await file.close();
    }
    assert.ok(readFileSync(path).equals(expected));
  });

  it("goes on after short writes, from where each one stopped", async () => {
    const path = join(dir, "short");
    const file = await open(path, "w");
    let calls = 0;
    // The real file, but each writev writes at most 7 bytes of what it is given.
    const stingy = {
      async writev(buffers: Uint8Array[], position: number) {
        calls++;
        const first = Buffer.concat(buffers).subarray(0, 7);
        const { bytesWritten } = await file.write(first, 0, first.length, position);
        return { bytesWritten, buffers };
      },
    } as unknown as FileHandle;
    try {
      await writeFully(stingy, [parts[0]!, parts[2]!, parts[4]!], 3);
    } finally {
      await file.close();
    }
    const want = Buffer.concat([Buffer.alloc(3), parts[0]!, parts[2]!, parts[4]!]);
    assert.ok(readFileSync(path).equals(want));
    assert.equal(calls, Math.ceil((want.length - 3) / 7));
  });
  it("writes nothing for only empty parts, and throws rather than loop when a write makes no progress", async () => {
    let calls = 0;
    const counting = {
      async writev() {
        calls++;
        return { bytesWritten: 0, buffers: [] };
      },
    } as unknown as FileHandle;
    await writeFully(counting, [Buffer.alloc(0), new Uint8Array(0)], 0);
    assert.equal(calls, 0);
    await assert.rejects(
      writeFully(counting, [Buffer.from("x")], 42),
      /wrote nothing at position 42/,
    );
    assert.equal(calls, 1);
  });
});
