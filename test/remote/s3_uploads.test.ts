/**
 * Uploads and downloads of a timeline through S3 (s3rver) with faults injected between
 * them (connection resets, 500/503 answers, stalls that time out, uploads and downloads
 * cut short): nothing is lost, the remote index never names a layer that is not whole in
 * S3, an attach from there holds every byte, and a cancelled download is prompt and
 * leaves no partial file.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CancellationToken,
  CancelledError,
  sleep,
  TaskKind,
  TaskRegistry,
} from "../../src/lifecycle/index.js";
import {
  attachTimeline,
  RemoteLayerFetcher,
  RemoteStorageError,
  RemoteUploader,
  remoteKeys,
} from "../../src/remote/index.js";
import type { S3Storage, S3StorageOptions } from "../../src/remote/s3_storage.js";
import {
  LayerCorruptError,
  parseTimelineIndex,
  Timeline,
  type TimelineIndex,
} from "../../src/timeline/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { FaultProxy, type S3Server, startS3Server } from "../support/s3.js";
import { makeWalSource, pieces, prng, testContext, type WalSource } from "../timeline/source.js";

const ctx = testContext;
// Request lines look like "PUT /tideline/faults/timelines/main/index.json?x-id=PutObject HTTP/1.1".
const LAYER_PUT = /^PUT \S+\.layer[ ?]/;
const LAYER_GET = /^GET \S+\.layer[ ?]/;
const INDEX_PUT = /^PUT \S+\/index\.json[ ?]/;
const INDEX_GET = /^GET \S+\/index\.json[ ?]/;

/** Polls `check` until it holds (a guard against hanging, not a timing goal). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; !check(); i++) {
    if (i > 6000) assert.fail(`never happened: ${what}`);
    await sleep(5, new CancellationToken());
  }
}

describe("a timeline's uploads and downloads through S3 with faults injected", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  let s3: S3Server;
  let proxy: FaultProxy;
  let proxyEndpoint = "";
  const clients: S3Storage[] = [];

  function storage(prefix: string, options: Partial<S3StorageOptions> = {}): S3Storage {
    const s = s3.storage(prefix, options);
    clients.push(s);
    return s;
  }
  /** Through the proxy, one connection per request, giving up on a silent socket soon. */
  const faulty = (prefix: string, options: Partial<S3StorageOptions> = {}) =>
    storage(prefix, { endpoint: proxyEndpoint, keepAlive: false, idleTimeoutMs: 500, ...options });

  before(async () => {
    [src, s3] = await Promise.all([
      makeWalSource([
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
        "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 12000) g",
        "SELECT pg_switch_wal()",
        "UPDATE t SET v = 'y' WHERE id % 4 = 0",
      ]),
      startS3Server(),
    ]);
    proxy = new FaultProxy(s3.port);
    proxyEndpoint = `http://127.0.0.1:${await proxy.start()}`;
    dir = mkdtempSync(join(tmpdir(), "tideline-s3-uploads-"));
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await proxy?.close();
    await s3?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("loses nothing to resets, 5xx, timeouts and cut uploads; the index never names a missing layer", async () => {
    const direct = storage("faults");
    const tl = await Timeline.create({
      dataDir: join(dir, "upload"),
      id: "main",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 128 << 10,
    });
    proxy.faults.push(
      { kind: "status", status: 500, code: "InternalError", match: INDEX_GET },
      { kind: "reset", match: LAYER_PUT },
      { kind: "status", status: 500, code: "InternalError", match: INDEX_PUT },
      { kind: "stall", match: LAYER_PUT },
      { kind: "cutRequest", after: 32 << 10, match: LAYER_PUT },
      { kind: "status", status: 503, code: "SlowDown", match: LAYER_PUT },
      { kind: "reset", match: INDEX_PUT },
      { kind: "stall", match: INDEX_PUT },
      { kind: "cutRequest", after: 64 << 10, match: LAYER_PUT },
      { kind: "cutRequest", after: 300, match: INDEX_PUT },
      { kind: "status", status: 500, code: "InternalError", match: LAYER_PUT },
    );
    const injecting = proxy.faults.length;
    const injectedBefore = proxy.injected.length;
    const uploader = RemoteUploader.start(tl, faulty("faults"), {
      retry: { minMs: 10, factor: 2, maxMs: 200 },
    });

    // Watch the remote copy while it is written: every layer an index names is whole.
    let watching = true;
    const seen: TimelineIndex[] = [];
    const watch = (async () => {
      const token = new CancellationToken();
      // Once more after the uploads ended, so even a run too quick to be caught mid-write
      // checks the final index.
      for (let last = false; !last; ) {
        last = !watching;
        let index: TimelineIndex | undefined;
        try {
          const text = await direct.get(remoteKeys.index("main"), token);
          if (text !== undefined) index = parseTimelineIndex(text.toString("utf8"), "s3");
        } catch (error) {
          // s3rver (unlike S3) writes objects in place: a read beside a write may break off
          // (transient), find a cut upload, which S3Storage refuses, or (seen once under
          // load) get a torn copy of the index. Look again later; the last look, after the
          // uploads ended, must succeed.
          const retry =
            !last &&
            ((error instanceof RemoteStorageError &&
              (error.transient || /SHA-256/.test(error.message))) ||
              error instanceof LayerCorruptError);
          if (!retry) throw error;
        }
        if (index !== undefined) {
          seen.push(index);
          for (const l of index.layers) {
            const layer = await direct.get(remoteKeys.layer("main", l.file), token);
            assert.ok(layer !== undefined, `the index names ${l.file}, which is not in S3`);
            assert.equal(layer.length, l.size, `${l.file} is whole in S3`);
          }
        }
        await sleep(20, token);
      }
    })();
    try {
      const c = ctx();
      for (const p of pieces(src, src.start, src.end, prng(21))) await tl.ingest(p.lsn, p.bytes, c);
      const result = await tl.shutdown("freeze-and-flush");
      assert.equal(result.remoteConsistentLsn, result.diskConsistentLsn, "every layer uploaded");
    } finally {
      watching = false;
      await watch;
    }
    assert.ok(seen.length > 0, "the watcher saw the remote index");
    assert.equal(proxy.faults.length, 0, "every fault was injected");
    assert.equal(proxy.injected.length - injectedBefore, injecting);
    assert.ok(uploader.failures >= injecting, `${uploader.failures} failed attempts, all retried`);

    const token = new CancellationToken();
    const index = parseTimelineIndex(
      (await direct.get(remoteKeys.index("main"), token))!.toString("utf8"),
      "s3",
    );
    assert.deepEqual(
      index.layers.map((l) => l.file),
      tl.layerFiles.map((f) => f.file),
    );
    for (const f of tl.layerFiles) {
      const remote = await direct.get(remoteKeys.layer("main", f.file), token);
      assert.ok(remote?.equals(readFileSync(f.path)), `${f.file} in S3 byte for byte`);
    }

    // And back: an attach through the same faults, downloads cut short or stalled.
    proxy.faults.push(
      { kind: "reset", match: INDEX_GET },
      { kind: "cutResponse", after: 40 << 10, match: LAYER_GET },
      { kind: "stallResponse", after: 20 << 10, match: LAYER_GET },
      { kind: "status", status: 503, code: "SlowDown", match: LAYER_GET },
      { kind: "reset", match: LAYER_GET },
    );
    let downloadFailures = 0;
    const attached = await attachTimeline({
      dataDir: join(dir, "attached"),
      id: "main",
      storage: faulty("faults"),
      ctx: ctx(),
      download: "all",
      retry: { retry: { minMs: 10, factor: 2, maxMs: 200 }, onError: () => downloadFailures++ },
    });
    assert.ok(attached !== undefined);
    try {
      assert.equal(proxy.faults.length, 0, "every download fault was injected");
      assert.ok(downloadFailures >= 5, `${downloadFailures} failed downloads, all retried`);
      assert.equal(attached.streamEnd, tl.diskConsistentLsn);
      const wal = await attached.readWal(src.start, attached.streamEnd, ctx());
      assert.ok(
        wal.equals(src.bytes.subarray(0, wal.length)),
        "the attached WAL equals the source",
      );
      assert.equal(wal.length, Number(tl.diskConsistentLsn - src.start));
    } finally {
      await attached.shutdown("hard");
    }
  });

  it("a reader cancelled while its layer's download stalls gets CancelledError, and no partial file is left", async () => {
    const prefix = "cancel";
    const tl = await Timeline.create({
      dataDir: join(dir, "cancel-src"),
      id: "main",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 512 << 10,
    });
    RemoteUploader.start(tl, storage(prefix));
    const c = ctx();
    for (const p of pieces(src, src.start, src.end, prng(22))) await tl.ingest(p.lsn, p.bytes, c);
    await tl.shutdown("freeze-and-flush");

    const registry = new TaskRegistry();
    // Patient: it would wait a minute for the stalled body; only the token stops it sooner.
    const patient = faulty(prefix, { idleTimeoutMs: 60_000 });
    const dataDir = join(dir, "cancel-attached");
    const attached = (await attachTimeline({
      dataDir,
      id: "main",
      storage: storage(prefix),
      ctx: ctx(),
      registry,
      layerFetcher: new RemoteLayerFetcher(patient),
    }))!;
    try {
      const f = attached.layerFiles.find((l) => !l.resident);
      assert.ok(f !== undefined, "a layer left remote by the lazy attach");
      proxy.faults.push({ kind: "stallResponse", after: 64 << 10, match: LAYER_GET });
      const reader = ctx();
      const read = attached.readWal(f.start, f.end, reader);
      await until(() => proxy.faults.length === 0, "the download reached the stalled server");
      reader.token.cancel("the client went away");
      await assert.rejects(read, CancelledError);
      const downloads = () => registry.tree().filter((t) => t.kind === TaskKind.RemoteDownload);
      await until(() => downloads().length === 0, "the download ended");
      const layers = join(dataDir, "timelines", "main", "layers");
      assert.ok(
        !readdirSync(layers).some((name) => name.startsWith(f.file)),
        "no partial file of the layer",
      );
      assert.equal(attached.layerFiles.find((l) => l.file === f.file)?.resident, false);
      // Without the stall, the next read downloads it.
      const bytes = await attached.readWal(f.start, f.end, ctx());
      assert.ok(
        bytes.equals(src.bytes.subarray(Number(f.start - src.start), Number(f.end - src.start))),
      );
    } finally {
      await attached.shutdown("hard");
    }
  });
});
