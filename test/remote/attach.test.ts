/**
 * Attaching a timeline from remote storage (a local-directory store here; S3 in
 * s3_uploads.test.ts): the resume point comes from the remote layers, never from index
 * fields that are ahead of them; the attached timeline continues with no gap and no
 * duplicate, reads download what is not local, and uploads go on from there.
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CancellationToken } from "../../src/lifecycle/index.js";
import {
  attachTimeline,
  FileStorage,
  RemoteLayerFetcher,
  RemoteUploader,
  remoteKeys,
} from "../../src/remote/index.js";
import {
  DiskLayer,
  parseTimelineIndex,
  serializeTimelineIndex,
  Timeline,
  type TimelineIndex,
} from "../../src/timeline/index.js";
import { formatLsn } from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "../timeline/source.js";

const ctx = testContext;

/** The fields a resume depends on. */
const resumeFields = (i: TimelineIndex) => ({
  startLsn: formatLsn(i.startLsn),
  diskConsistentLsn: formatLsn(i.diskConsistentLsn),
  nextRecordLsn: formatLsn(i.nextRecordLsn),
  lastRecordEnd: formatLsn(i.lastRecordEnd),
  pgTimeline: i.pgTimeline,
  pgVersion: i.pgVersion,
  systemId: i.systemId,
  history: i.history,
  layers: i.layers.map((l) => l.file),
});

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 4000) g",
  "SELECT pg_switch_wal()",
  "INSERT INTO t SELECT g, 'z' FROM generate_series(4001, 8000) g",
  "SELECT pg_switch_wal()",
  "UPDATE t SET v = 'y' WHERE id % 3 = 0",
];

describe("attachTimeline from a local-directory store", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  /** A timeline holding all of the source, flushed: the layers to "upload". */
  let full: Timeline;
  let n = 0;

  useWalSource(
    WORKLOAD,
    "attach",
    async (s) => {
      ({ src, dir } = s);
      full = await Timeline.create({
        dataDir: join(dir, "full"),
        id: "main",
        startLsn: src.start,
        segmentSize: src.segmentSize,
        layerSize: 96 << 10,
      });
      const c = ctx();
      for (const p of pieces(src, src.start, src.end, prng(7), 60_000))
        await full.ingest(p.lsn, p.bytes, c);
      await full.flush(c);
    },
    async () => {
      await full?.shutdown("hard");
    },
  );

  /**
   * A store holding the first `count` layers of `full` and an index naming them, written
   * the way the first uploader did: with the resume fields of `full`'s newest layer.
   */
  function staleStore(count: number): FileStorage {
    const root = join(dir, `store-${n++}`);
    const store = new FileStorage(root);
    const local = full.indexSnapshot();
    const layers = local.layers.slice(0, count);
    mkdirSync(join(root, "timelines", "main", "layers"), { recursive: true });
    for (const l of layers) {
      copyFileSync(
        join(full.dir, "layers", l.file),
        join(root, ...remoteKeys.layer("main", l.file).split("/")),
      );
    }
    const end = layers[layers.length - 1]?.end ?? local.startLsn;
    const stale = { ...local, layers, diskConsistentLsn: end, remoteConsistentLsn: end };
    writeFileSync(
      join(root, ...remoteKeys.index("main").split("/")),
      serializeTimelineIndex(stale),
    );
    return store;
  }

  async function continueToEnd(tl: Timeline, seed: number) {
    const c = ctx();
    for (const p of pieces(src, tl.streamEnd, src.end, prng(seed), 60_000))
      await tl.ingest(p.lsn, p.bytes, c);
    assert.equal(tl.lastRecordLsn, src.end, "the rest of the WAL decoded to its last record");
    const wal = await tl.readWal(src.start, src.end, c);
    assert.ok(wal.equals(src.bytes), "no gap and no duplicate: the WAL equals the source");
    let records = 0;
    for await (const _ of tl.records(src.start, src.end, c)) records++;
    assert.equal(records, src.records.length, "every record once");
  }

  it("derives the resume point from the remote layers, not from index fields ahead of them, and continues exactly there", async () => {
    const layers = full.indexSnapshot().layers;
    const ends = (
      await Promise.all(layers.map((l) => DiskLayer.open(join(full.dir, "layers", l.file))))
    ).map((l, i) => ({ i, records: l.records.length }));
    // Every kind of boundary: inside switch padding (before a padding-only layer), after a
    // padding-only layer, ordinary ones, the first and the last.
    const interesting = new Set<number>([1, 2, layers.length - 1, layers.length]);
    for (const { i, records } of ends) if (records === 0) interesting.add(i).add(i + 1);
    for (let k = 3; k < layers.length; k += 7) interesting.add(k);
    assert.ok(
      ends.some((e) => e.records === 0),
      "the source has padding-only layers",
    );
    for (const count of [...interesting].sort((a, b) => a - b)) {
      const store = staleStore(count);
      const dataDir = join(dir, `attach-${n++}`);
      const tl = await attachTimeline({ dataDir, id: "main", storage: store, ctx: ctx() });
      assert.ok(tl !== undefined);
      try {
        const end = layers[count - 1]!.end;
        const at = `${count} of ${layers.length} layers, up to ${formatLsn(end)}`;
        assert.equal(tl.streamEnd, end, `resumes at the end of the remote layers (${at})`);
        assert.equal(tl.diskConsistentLsn, end);
        assert.equal(tl.remoteConsistentLsn, end);
        assert.deepEqual(
          resumeFields(tl.indexSnapshot()),
          resumeFields(await full.indexAt(end, ctx())),
          `the resume fields are those of the remote layers (${at})`,
        );
        assert.ok(
          tl.layerFiles.some((f) => !f.resident) || count <= 2,
          "lazy: older layers are left remote",
        );
        await continueToEnd(tl, count);
      } finally {
        await tl.shutdown("hard");
      }
    }
  });

  it("is undefined when the store has no such timeline, and creates nothing", async () => {
    const store = new FileStorage(join(dir, "empty-store"));
    const dataDir = join(dir, "nothing");
    assert.equal(
      await attachTimeline({ dataDir, id: "main", storage: store, ctx: ctx() }),
      undefined,
    );
    assert.equal(existsSync(dataDir), false);
  });

  it("refuses a timeline that exists locally", async () => {
    const store = staleStore(3);
    const dataDir = join(dir, `exists-${n++}`);
    const tl = (await attachTimeline({ dataDir, id: "main", storage: store, ctx: ctx() }))!;
    await tl.shutdown("hard");
    await assert.rejects(
      attachTimeline({ dataDir, id: "main", storage: store, ctx: ctx() }),
      TypeError,
    );
  });

  it("with download 'all', every layer is local; an interrupted attach's whole layers are reused, others replaced", async () => {
    const count = full.indexSnapshot().layers.length;
    const store = staleStore(count);
    const dataDir = join(dir, `all-${n++}`);
    const layersDir = join(dataDir, "timelines", "main", "layers");
    mkdirSync(layersDir, { recursive: true });
    const [first, second] = full.layerFiles;
    copyFileSync(first!.path, join(layersDir, first!.file)); // whole
    writeFileSync(join(layersDir, second!.file), "torn"); // damaged
    writeFileSync(join(layersDir, `${second!.file}.download`), "partial");
    const fetcher = new RemoteLayerFetcher(store);
    const tl = (await attachTimeline({
      dataDir,
      id: "main",
      storage: store,
      ctx: ctx(),
      download: "all",
      layerFetcher: fetcher,
    }))!;
    try {
      assert.ok(tl.layerFiles.every((f) => f.resident));
      assert.equal(fetcher.downloads, count - 1, "the whole layer was not downloaded again");
      assert.deepEqual(
        readdirSync(layersDir).sort(),
        tl.layerFiles.map((f) => f.file).sort(),
        "nothing else left in layers/",
      );
      assert.ok((await tl.readWal(src.start, src.end, ctx())).equals(src.bytes));
    } finally {
      await tl.shutdown("hard");
    }
  });

  it("read-only: opens the remote copy in a throwaway dir, reads download only what they need", async () => {
    const count = full.indexSnapshot().layers.length;
    const store = staleStore(count);
    const dataDir = join(dir, `ro-${n++}`);
    const tl = (await attachTimeline({
      dataDir,
      id: "main",
      storage: store,
      ctx: ctx(),
      readOnly: true,
    }))!;
    try {
      assert.ok(
        tl.layerFiles.every((f) => !f.resident),
        "nothing downloaded up front",
      );
      const f = tl.layerFiles[3]!;
      const bytes = await tl.readWal(f.start, f.end, ctx());
      assert.ok(
        bytes.equals(src.bytes.subarray(Number(f.start - src.start), Number(f.end - src.start))),
      );
      assert.equal(tl.layerFiles.filter((l) => l.resident).length, 1);
      await assert.rejects(tl.ingest(tl.streamEnd, Buffer.alloc(8), ctx()), TypeError);
    } finally {
      await tl.shutdown("hard");
    }
  });

  it("after an attach, uploads go on: a second attach elsewhere holds everything", async () => {
    const store = staleStore(5);
    const tl = (await attachTimeline({
      dataDir: join(dir, `up-${n++}`),
      id: "main",
      storage: store,
      ctx: ctx(),
    }))!;
    const uploader = RemoteUploader.start(tl, store);
    await continueToEnd(tl, 99);
    const result = await tl.shutdown("freeze-and-flush");
    assert.equal(result.remoteConsistentLsn, result.diskConsistentLsn);
    assert.ok(uploader.uploads > 0);
    const index = parseTimelineIndex(
      (await store.get(remoteKeys.index("main"), new CancellationToken()))!.toString("utf8"),
      "remote",
    );
    assert.equal(index.remoteConsistentLsn, result.diskConsistentLsn);
    const again = (await attachTimeline({
      dataDir: join(dir, `again-${n++}`),
      id: "main",
      storage: store,
      ctx: ctx(),
    }))!;
    try {
      assert.equal(again.streamEnd, result.diskConsistentLsn);
      assert.ok((await again.readWal(src.start, src.end, ctx())).equals(src.bytes));
    } finally {
      await again.shutdown("hard");
    }
  });
});
