import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { CancellationToken } from "../../src/lifecycle/index.js";
import { DiskLayer, InMemoryLayer, writeLayerFile } from "../../src/timeline/index.js";

describe("writeLayerFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "tideline-layerfile-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const meta = { systemId: 7n, pgTimeline: 1, pgVersion: 15 };

  /** A layer of `pages` pages of WAL-like bytes with one record a page and `blocks` refs. */
  function layerAt(start: bigint, pages: number, blocks: number): InMemoryLayer {
    const layer = new InMemoryLayer(start);
    for (let p = 0; p < pages; p++) layer.append(Buffer.alloc(8192, p + 1));
    for (let p = 0; p < pages; p++) {
      const lsn = start + BigInt(p * 8192 + 24);
      layer.records.push(lsn, lsn + 100n, 1000 + p, 100, 10, 0);
    }
    for (let b = 0; b < blocks; b++)
      layer.blocks.pushRaw(1663, 5, 16384 + (b % 3), 0, b, 0, b % pages);
    return layer;
  }

  it("keeps exactly the rows, not the room a layer reserved for more (also with no block refs)", async () => {
    const busy = layerAt(0x1000000n, 8, 500);
    // Freezing reserves room in the next layer's tables for about as many rows.
    const quiet = busy.freezeAt(busy.end);
    assert.ok(quiet.blocks.spc.length >= 500 && quiet.records.lsn.length >= 8);
    quiet.append(Buffer.alloc(8192, 9));
    quiet.records.push(quiet.start + 24n, quiet.start + 124n, 1, 100, 10, 0);
    quiet.freezeAt(quiet.end);
    const layers = join(dir, "layers");
    mkdirSync(layers);
    for (const layer of [busy, quiet]) {
      const w = await writeLayerFile(layers, layer, meta, new CancellationToken(), {
        fsync: false,
      });
      const mine = w.layer!;
      const opened = await DiskLayer.open(mine.path);
      assert.deepEqual(mine.records, opened.records);
      assert.deepEqual(mine.blocks, opened.blocks);
      for (const col of [mine.blocks.spc, mine.blocks.blk, mine.blocks.fork, mine.blocks.flags]) {
        assert.equal(col.length, layer.blocks.length);
      }
      for (const col of [mine.records.lsn, mine.records.xid, mine.records.info]) {
        assert.equal(col.length, layer.records.length);
      }
      assert.ok((await mine.read(mine.start, mine.end)).equals(layer.read(layer.start, layer.end)));
    }
  });
});
