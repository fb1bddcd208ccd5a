/**
 * Layers evicted once uploaded, and downloaded again on read through the timeline's
 * LayerFetcher (here a copy from a directory standing in for remote storage): reads stay
 * byte-exact, readers share one download, a cancelled reader or a hard shutdown never
 * waits for a slow download, and no partial file is left behind.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  type CancellationToken,
  CancelledError,
  sleep,
  TaskKind,
  TaskRegistry,
} from "../../src/lifecycle/index.js";
import {
  type BlockKey,
  type IndexedLayer,
  type LayerFetcher,
  LayerNotLocalError,
  Timeline,
  TimelineShutdownError,
} from "../../src/timeline/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const ctx = testContext;

/** Polls `check` until it holds (a guard against hanging, not a timing goal). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; !check(); i++) {
    if (i > 6000) assert.fail(`never happened: ${what}`);
    await sleep(5, ctx().token);
  }
}

/** Copies layers from a directory; can hang (on its token) after writing half a file. */
class CopyFetcher implements LayerFetcher {
  readonly display: string;
  calls = 0;
  hang = false;
  constructor(readonly from: string) {
    this.display = `copy from ${from}`;
  }
  async fetch(_id: string, layer: IndexedLayer, path: string, token: CancellationToken) {
    this.calls++;
    const data = readFileSync(join(this.from, layer.file));
    const tmp = `${path}.download`;
    try {
      await writeFile(tmp, data.subarray(0, data.length >> 1));
      if (this.hang) await sleep(600_000, token);
      token.throwIfCancelled();
      await writeFile(tmp, data);
      await rename(tmp, path);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }
}

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 8000) g",
  "UPDATE t SET v = 'y' WHERE id % 5 = 0",
];

describe("Timeline layer eviction and download on read", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  let n = 0;

  useWalSource(WORKLOAD, "evict", (s) => {
    ({ src, dir } = s);
  });

  /** A flushed timeline whose layers are all "uploaded" (copied to the fetcher's directory). */
  async function uploaded(registry?: TaskRegistry) {
    const id = `e${n++}`;
    const dataDir = join(dir, id);
    const remote = join(dir, `${id}-remote`);
    mkdirSync(remote);
    const fetcher = new CopyFetcher(remote);
    const tl = await Timeline.create({
      dataDir,
      id,
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 128 << 10,
      layerFetcher: fetcher,
      ...(registry !== undefined ? { registry } : {}),
    });
    const c = ctx();
    for (const p of pieces(src, src.start, src.end, prng(n))) await tl.ingest(p.lsn, p.bytes, c);
    await tl.flush(c);
    for (const f of tl.layerFiles) copyFileSync(f.path, join(remote, f.file));
    tl.advanceRemoteConsistentLsn(tl.diskConsistentLsn);
    return { id, dataDir, fetcher, tl };
  }

  const sourceRecords = (from: bigint, to: bigint) =>
    src.records.filter((r) => r.lsn >= from && r.lsn < to).length;

  it("evicts only uploaded layers; reads download them again, byte-exact", async () => {
    const { id, dataDir, fetcher, tl } = await uploaded();
    const c = ctx();
    const files = tl.layerFiles;
    assert.ok(files.length > 4, `several layers: ${files.length}`);
    const last = files[files.length - 1]!;
    // Layers beyond remoteConsistentLsn stay.
    const notUploaded = await Timeline.create({
      dataDir: join(dir, `${id}-fresh`),
      id: "fresh",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 128 << 10,
      layerFetcher: fetcher,
    });
    await notUploaded.ingest(src.start, Buffer.from(src.bytes.subarray(0, 300_000)), c);
    await notUploaded.flush(c);
    for (const f of notUploaded.layerFiles)
      assert.equal(notUploaded.evictLayer(f.file), "not-uploaded");
    await notUploaded.shutdown("hard");

    for (const f of files) assert.equal(tl.evictLayer(f.file), "evicted", f.file);
    assert.ok(tl.layerFiles.every((f) => !f.resident));
    assert.deepEqual(
      readdirSync(join(dataDir, "timelines", id, "layers")),
      [],
      "the local files are gone",
    );
    assert.equal(tl.evictLayer(last.file), "not-resident");
    assert.throws(() => tl.evictLayer("no-such.layer"), RangeError);

    const wal = await tl.readWal(src.start, src.end, c);
    assert.ok(wal.equals(src.bytes), "the WAL read after eviction equals the source");
    assert.equal(fetcher.calls, files.length, "each layer downloaded once");
    assert.ok(tl.layerFiles.every((f) => f.resident));
    for (const f of tl.layerFiles)
      assert.ok(readFileSync(f.path).equals(readFileSync(join(fetcher.from, f.file))));

    for (const f of files) tl.evictLayer(f.file);
    let count = 0;
    for await (const _ of tl.records(src.start, src.end, c)) count++;
    assert.equal(count, sourceRecords(src.start, src.end), "records() after eviction");

    // A layer being read is not evicted.
    const first = files[0]!;
    const range = tl.walRange(first.start, first.end, c);
    await range.next();
    assert.equal(tl.evictLayer(first.file), "in-use");
    await range.return(undefined);
    assert.equal(tl.evictLayer(first.file), "evicted");
    await tl.shutdown("freeze-and-flush");

    // Evicted layers survive a restart: the index still lists them.
    const reopened = await Timeline.open({ dataDir, id, layerFetcher: fetcher });
    assert.ok(!reopened.layerFiles[0]!.resident);
    assert.ok((await reopened.readWal(src.start, src.end, c)).equals(src.bytes));
    reopened.evictLayer(first.file);
    await reopened.shutdown("hard");
    // Without a fetcher: a writer refuses to open, a reader opens and fails on the read.
    await assert.rejects(Timeline.open({ dataDir, id }), LayerNotLocalError);
    const reader = await Timeline.open({ dataDir, id, readOnly: true });
    await assert.rejects(reader.readWal(first.start, first.end, c), (e: unknown) => {
      assert.ok(e instanceof LayerNotLocalError);
      assert.match(e.message, new RegExp(first.file));
      return true;
    });
    assert.throws(() => reader.evictLayer(first.file), TypeError);
    await reader.shutdown("hard");
  });

  it("a block's history downloads only the evicted layers whose relation filter may hold it", async () => {
    const { tl, fetcher } = await uploaded();
    try {
      await blockHistoryDownloads(tl, fetcher);
    } finally {
      await tl.shutdown("hard");
    }
  });

  async function blockHistoryDownloads(tl: Timeline, fetcher: CopyFetcher): Promise<void> {
    const c = ctx();
    const files = tl.layerFiles;
    // The relation forks each layer's records touch, and one block of each.
    const FORKS: Record<string, number> = { main: 0, fsm: 1, vm: 2, init: 3 };
    const layersOf = new Map<string, { layers: Set<number>; key: BlockKey }>();
    for (const [i, f] of files.entries()) {
      for await (const r of tl.records(f.start, f.end, c)) {
        for (const b of r.blocks) {
          const [spc, db, rel] = b.rel.split("/").map(Number) as [number, number, number];
          const name = `${b.rel}/${b.fork}`;
          let e = layersOf.get(name);
          if (e === undefined) {
            e = { layers: new Set(), key: { spc, db, rel, fork: FORKS[b.fork]!, blk: b.blk } };
            layersOf.set(name, e);
          }
          e.layers.add(i);
        }
      }
    }
    const [, rare] = [...layersOf].sort((a, b) => a[1].layers.size - b[1].layers.size)[0]!;
    assert.ok(rare.layers.size < files.length / 2, `a relation in few of ${files.length} layers`);
    const upTo = tl.lastRecordLsn;
    const reference = await tl.blockHistory(rare.key, upTo, c);
    assert.ok(reference.records.length > 0);

    for (const f of files) tl.evictLayer(f.file);
    fetcher.calls = 0;
    assert.deepEqual(await tl.blockHistory(rare.key, upTo, c), reference);
    // The layers that hold the relation, and at most one that a filter wrongly lets through.
    assert.ok(fetcher.calls >= rare.layers.size, `${fetcher.calls} downloads`);
    assert.ok(fetcher.calls <= rare.layers.size + 1, `${fetcher.calls} downloads`);

    // A relation no record touches: nothing to download.
    for (const f of tl.layerFiles) if (f.resident) tl.evictLayer(f.file);
    fetcher.calls = 0;
    const none = await tl.blockHistory(
      { spc: 1663, db: 5, rel: 4_000_000_000, fork: 0, blk: 0 },
      upTo,
      c,
    );
    assert.deepEqual(none.records, []);
    assert.ok(fetcher.calls <= 1, `${fetcher.calls} downloads`);
  }

  it("serves concurrent readers of an evicted layer with one download", async () => {
    const { fetcher, tl } = await uploaded();
    const c = ctx();
    const f = tl.layerFiles[1]!;
    tl.evictLayer(f.file);
    const reads = await Promise.all(Array.from({ length: 5 }, () => tl.readWal(f.start, f.end, c)));
    const expected = src.bytes.subarray(Number(f.start - src.start), Number(f.end - src.start));
    for (const r of reads) assert.ok(r.equals(expected));
    assert.equal(fetcher.calls, 1);
    await tl.shutdown("hard");
  });

  it("a reader cancelled during a slow download gets CancelledError; the download stops, leaving no file", async () => {
    const registry = new TaskRegistry();
    const { dataDir, id, fetcher, tl } = await uploaded(registry);
    const f = tl.layerFiles[2]!;
    tl.evictLayer(f.file);
    fetcher.hang = true;
    const c = ctx();
    const read = tl.readWal(f.start, f.end, c);
    const downloads = () => registry.tree().filter((t) => t.kind === TaskKind.RemoteDownload);
    await until(() => downloads().length > 0 && fetcher.calls > 0, "the download started");
    c.token.cancel("the client went away");
    await assert.rejects(read, CancelledError);
    // The download had no other reader: it is cancelled too, and cleans up after itself.
    await until(() => downloads().length === 0, "the download ended");
    const layers = join(dataDir, "timelines", id, "layers");
    assert.ok(!readdirSync(layers).some((name) => name.startsWith(f.file)), "no partial file");
    assert.ok(!tl.layerFiles[2]!.resident);
    // The next read downloads it again.
    fetcher.hang = false;
    const again = await tl.readWal(f.start, f.end, ctx());
    assert.ok(
      again.equals(src.bytes.subarray(Number(f.start - src.start), Number(f.end - src.start))),
    );
    await tl.shutdown("hard");
  });

  it("a hard shutdown does not wait for a slow download; its reader gets TimelineShutdownError", async () => {
    const { dataDir, id, fetcher, tl } = await uploaded();
    const f = tl.layerFiles[0]!;
    tl.evictLayer(f.file);
    fetcher.hang = true;
    const read = tl.readWal(f.start, f.end, ctx());
    const failed = assert.rejects(read, TimelineShutdownError);
    await until(() => fetcher.calls > 0, "the download started");
    await tl.shutdown("hard");
    await failed;
    const layers = join(dataDir, "timelines", id, "layers");
    assert.ok(!readdirSync(layers).some((name) => name.startsWith(f.file)), "no partial file");
  });
});
