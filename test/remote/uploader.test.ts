import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { CancellationToken, sleep } from "../../src/lifecycle/index.js";
import {
  FileStorage,
  type RemoteStorage,
  RemoteStorageError,
  RemoteUploader,
  remoteKeys,
} from "../../src/remote/index.js";
import {
  LayerCorruptError,
  parseTimelineIndex,
  Timeline,
  type TimelineIndex,
} from "../../src/timeline/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "../timeline/source.js";

const ctx = testContext;

/** Wraps a storage to slow it down, make it fail, or watch what it is asked. */
class Instrumented implements RemoteStorage {
  readonly display: string;
  readonly puts: string[] = [];
  /** Every index put, parsed. */
  readonly indexes: TimelineIndex[] = [];
  delayMs = 0;
  failNext = 0;
  constructor(readonly inner: RemoteStorage) {
    this.display = inner.display;
  }
  async put(key: string, data: Buffer, token: CancellationToken) {
    if (this.delayMs > 0) await sleep(this.delayMs, token);
    if (this.failNext > 0) {
      this.failNext--;
      throw new RemoteStorageError("put", key, this.display, "injected 503", true);
    }
    if (key.endsWith("index.json")) {
      const index = parseTimelineIndex(data.toString("utf8"), key);
      this.indexes.push(index);
      // Every layer the index names must have been uploaded before it.
      for (const l of index.layers) {
        assert.ok(
          this.puts.includes(key.replace("index.json", `layers/${l.file}`)),
          `${l.file} before the index naming it`,
        );
      }
    }
    await this.inner.put(key, data, token);
    this.puts.push(key);
  }
  get(key: string, token: CancellationToken) {
    return this.inner.get(key, token);
  }
  list(prefix: string, token: CancellationToken) {
    return this.inner.list(prefix, token);
  }
  delete(key: string, token: CancellationToken) {
    return this.inner.delete(key, token);
  }
}

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 15000) g",
];

describe("RemoteUploader with a local-directory store", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  let n = 0;

  useWalSource(WORKLOAD, "upload", (s) => {
    ({ src, dir } = s);
  });

  async function setup() {
    const id = `t${n++}`;
    const dataDir = join(dir, id);
    const store = new Instrumented(new FileStorage(join(dir, `${id}-remote`)));
    const tl = await Timeline.create({
      dataDir,
      id,
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 256 << 10,
    });
    return { id, dataDir, store, tl };
  }

  async function ingestAll(tl: Timeline, seed: number) {
    const c = ctx();
    for (const p of pieces(src, tl.streamEnd, src.end, prng(seed)))
      await tl.ingest(p.lsn, p.bytes, c);
  }

  async function assertRemoteHoldsAll(tl: Timeline, store: RemoteStorage) {
    const token = new CancellationToken();
    const index = parseTimelineIndex(
      (await store.get(remoteKeys.index(tl.id), token))!.toString("utf8"),
      "remote",
    );
    assert.equal(index.remoteConsistentLsn, tl.diskConsistentLsn);
    assert.deepEqual(
      index.layers.map((l) => l.file),
      tl.layerFiles.map((f) => basename(f.path)),
    );
    for (const f of tl.layerFiles) {
      const remote = await store.get(remoteKeys.layer(tl.id, basename(f.path)), token);
      assert.ok(remote?.equals(readFileSync(f.path)), `${basename(f.path)} uploaded byte for byte`);
    }
  }

  it("uploads every flushed layer, then the index naming it; freeze-and-flush waits for a slow store", async () => {
    const { store, tl } = await setup();
    store.delayMs = 30;
    const uploader = RemoteUploader.start(tl, store);
    await ingestAll(tl, 1);
    const result = await tl.shutdown("freeze-and-flush");
    assert.equal(
      result.remoteConsistentLsn,
      result.diskConsistentLsn,
      "everything durable is remote",
    );
    assert.equal(result.diskConsistentLsn, result.lastRecordLsn);
    assert.ok(uploader.uploads > 5, `${uploader.uploads} layers uploaded`);
    await assertRemoteHoldsAll(tl, store);
  });

  it("writes remote indexes whose resume fields are those of the layers they name, not of newer local ones", async () => {
    const { store, tl } = await setup();
    store.delayMs = 20; // local layers run ahead of the uploads
    RemoteUploader.start(tl, store);
    await ingestAll(tl, 4);
    await tl.shutdown("freeze-and-flush");
    assert.ok(store.indexes.length > 5);
    const reopened = await Timeline.open({ dataDir: join(dir, tl.id), id: tl.id });
    try {
      let behind = 0;
      for (const index of store.indexes) {
        const truth = await reopened.indexAt(index.diskConsistentLsn, ctx());
        assert.equal(index.remoteConsistentLsn, index.diskConsistentLsn);
        assert.deepEqual(
          { ...index, remoteConsistentLsn: 0n },
          { ...truth, remoteConsistentLsn: 0n },
          `the remote index up to ${index.diskConsistentLsn}`,
        );
        if (index.nextRecordLsn < reopened.indexSnapshot().nextRecordLsn) behind++;
      }
      assert.ok(behind > 0, "intermediate indexes differ from the newest local one");
    } finally {
      await reopened.shutdown("hard");
    }
  });

  it("a damaged remote index at start (a cut upload on a store without atomic puts) means upload everything again", async () => {
    const { store, tl } = await setup();
    await store.inner.put(
      remoteKeys.index(tl.id),
      Buffer.from('{"format": 1, "id": "t'),
      new CancellationToken(),
    );
    const errors: unknown[] = [];
    const uploader = RemoteUploader.start(tl, store, { onError: (e) => errors.push(e) });
    await ingestAll(tl, 5);
    await tl.shutdown("freeze-and-flush");
    assert.ok(
      errors.some((e) => e instanceof LayerCorruptError),
      "the damage was reported",
    );
    assert.equal(uploader.uploads, tl.layerFiles.length, "every layer uploaded again");
    await assertRemoteHoldsAll(tl, store);
  });

  it("retries transient errors with backoff", async () => {
    const { store, tl } = await setup();
    store.failNext = 4;
    const uploader = RemoteUploader.start(tl, store, { retry: { minMs: 5, factor: 2, maxMs: 50 } });
    await ingestAll(tl, 2);
    await tl.shutdown("freeze-and-flush");
    assert.equal(uploader.failures, 4);
    await assertRemoteHoldsAll(tl, store);
  });

  it("a hard shutdown abandons uploads; the next start uploads the rest and keeps remoteConsistentLsn", async () => {
    const { id, dataDir, store, tl } = await setup();
    store.delayMs = 60_000; // a store that never answers in time
    RemoteUploader.start(tl, store);
    await ingestAll(tl, 3);
    await tl.flush(ctx());
    const result = await tl.shutdown("hard");
    assert.ok(result.remoteConsistentLsn < result.diskConsistentLsn, "uploads were abandoned");
    store.delayMs = 0;
    const reopened = await Timeline.open({ dataDir, id });
    const uploader = RemoteUploader.start(reopened, store);
    for (let i = 0; i < 500 && reopened.remoteConsistentLsn < reopened.diskConsistentLsn; i++) {
      await sleep(10, new CancellationToken());
    }
    assert.equal(reopened.remoteConsistentLsn, reopened.diskConsistentLsn);
    assert.ok(uploader.uploads > 0);
    await reopened.shutdown("freeze-and-flush");
    await assertRemoteHoldsAll(reopened, store);
    const again = await Timeline.open({ dataDir, id });
    assert.equal(
      again.remoteConsistentLsn,
      again.diskConsistentLsn,
      "remoteConsistentLsn is kept in the local index",
    );
    await again.shutdown("hard");
  });
});
