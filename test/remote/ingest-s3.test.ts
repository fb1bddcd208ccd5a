/**
 * `tideline ingest --remote s3://...` end to end, against a real PostgreSQL 15 primary and
 * S3 (s3rver behind a throttling proxy):
 * - SIGKILLed while uploads lag behind: the remote index names only layers that are whole
 *   in S3; the next start uploads the rest;
 * - the local data dir deleted: `ingest` with an empty data dir attaches the timeline from
 *   S3 and streams on, and the export equals the primary's pg_wal byte for byte, across
 *   the attach (no gap, no duplicate).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken } from "../../src/lifecycle/index.js";
import {
  RemoteObjectDamagedError,
  RemoteStorageError,
  remoteKeys,
} from "../../src/remote/index.js";
import type { S3Storage } from "../../src/remote/s3_storage.js";
import {
  LayerCorruptError,
  parseTimelineIndex,
  type TimelineIndex,
} from "../../src/timeline/index.js";
import { parseLsn } from "../../src/wal/index.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";
import { BUCKET, FaultProxy, S3_CREDENTIALS, type S3Server, startS3Server } from "../support/s3.js";
import { cli, killChild, until, url } from "../walreceiver/server-wal.js";

describe("tideline ingest --remote with S3: SIGKILL during uploads, then an attach", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let pg: Cluster;
  let s3: S3Server;
  let proxy: FaultProxy;
  let direct: S3Storage;
  let dir: string;
  let remote = "";
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

  before(async () => {
    [pg, s3] = await Promise.all([
      startCluster({
        walSegmentSizeMiB: 1,
        settings: {
          wal_level: "replica",
          wal_keep_size: "1GB",
          max_wal_size: "1GB",
          // Keepalives that ask for a reply every second: each freezes a layer, so layers
          // are small and many.
          wal_sender_timeout: "2s",
        },
      }),
      startS3Server(),
    ]);
    proxy = new FaultProxy(s3.port);
    const port = await proxy.start();
    remote = `s3://${BUCKET}/e2e?endpoint=http://127.0.0.1:${port}&forcePathStyle=true&region=us-east-1`;
    direct = s3.storage("e2e");
    // The ingest children find their credentials where the SDK looks.
    process.env.AWS_ACCESS_KEY_ID = S3_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3_CREDENTIALS.secretAccessKey;
    dir = mkdtempSync(join(tmpdir(), "tideline-ingest-s3-"));
  });
  after(async () => {
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    direct?.destroy();
    await proxy?.close();
    await Promise.all([pg?.stop(), s3?.close()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const localIndex = (dataDir: string): TimelineIndex | undefined => {
    const path = join(dataDir, "timelines", "main", "index.json");
    return existsSync(path) ? parseTimelineIndex(readFileSync(path, "utf8"), path) : undefined;
  };
  const remoteIndex = async (): Promise<TimelineIndex | undefined> => {
    const text = await direct.get(remoteKeys.index("main"), new CancellationToken());
    return text === undefined ? undefined : parseTimelineIndex(text.toString("utf8"), "s3");
  };
  /**
   * The remote index, or "unreadable" when s3rver (which, unlike S3, writes objects in
   * place) has part of one whose upload broke off, or a read raced a write.
   */
  const remoteIndexNow = async (): Promise<TimelineIndex | undefined | "unreadable"> => {
    try {
      return await remoteIndex();
    } catch (error) {
      const s3rverArtifact =
        error instanceof RemoteObjectDamagedError ||
        error instanceof LayerCorruptError ||
        (error instanceof RemoteStorageError && error.transient);
      if (s3rverArtifact) return "unreadable";
      throw error;
    }
  };
  /** Every layer the remote index names is in S3, byte for byte as in `dataDir`. */
  const assertRemoteConsistent = async (dataDir: string, index: TimelineIndex) => {
    for (const l of index.layers) {
      const object = await direct.get(remoteKeys.layer("main", l.file), new CancellationToken());
      assert.ok(object !== undefined, `the remote index names ${l.file}, missing from S3`);
      const local = join(dataDir, "timelines", "main", "layers", l.file);
      assert.ok(object.equals(readFileSync(local)), `${l.file} in S3 equals the local file`);
    }
  };
  const insert = (rows: number) =>
    pg.sql(
      `INSERT INTO filler SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, ${rows}) g`,
    );

  it("survives SIGKILL during uploads, then attaches from S3 into an empty data dir and streams on", async () => {
    await pg.sql("CREATE TABLE filler (id int, v text)");
    const startLsn = await pg.sql("SELECT pg_current_wal_lsn()");
    const dataDir = join(dir, "first");
    const args = (d: string) => [
      "ingest",
      "--source",
      url(pg),
      "--data-dir",
      d,
      "--remote",
      remote,
      // Small layers: many uploads, and many layers behind when the uploads lag.
      "--layer-size",
      "256KiB",
    ];

    // 1. Uploads crawl (about 400 KB/s) while WAL streams in; kill -9 once they lag.
    proxy.throttleBytesPerTick = 8 << 10;
    const first = cli([...args(dataDir), "--start-lsn", startLsn]);
    try {
      for (let i = 0; i < 6; i++) await insert(5000);
      // Every index seen while uploads run names only layers that are whole in S3.
      let remoteNow: TimelineIndex | undefined | "unreadable";
      let checked = 0;
      await until(
        async () => {
          const local = localIndex(dataDir);
          remoteNow = await remoteIndexNow();
          if (typeof remoteNow !== "object") return false;
          await assertRemoteConsistent(dataDir, remoteNow);
          checked++;
          return local !== undefined && local.layers.length >= remoteNow.layers.length + 3;
        },
        () =>
          `local ${localIndex(dataDir)?.layers.length} layers, remote ${JSON.stringify(remoteNow)}`,
        60_000,
      );
      assert.ok(checked > 0);
    } finally {
      await killChild(first);
    }
    const local = localIndex(dataDir)!;
    const lagging = await remoteIndexNow();
    if (typeof lagging === "object") {
      assert.ok(lagging.layers.length < local.layers.length, "killed with uploads behind");
      await assertRemoteConsistent(dataDir, lagging);
    } else {
      // Killed in the middle of an index upload: on S3 the old index would stay; s3rver
      // keeps part of the new one, which the next start must not trust.
      assert.equal(lagging, "unreadable");
    }

    // 2. The next start uploads the rest.
    proxy.throttleBytesPerTick = 0;
    await insert(5000);
    const end1 = await pg.sql("SELECT pg_current_wal_lsn()");
    const second = await cli([...args(dataDir), "--end-lsn", end1]).done;
    assert.equal(second.status, 0, second.stderr);
    const caughtUp = (await remoteIndex())!;
    assert.ok(caughtUp.remoteConsistentLsn >= parseLsn(end1), "uploaded up to --end-lsn");
    assert.deepEqual(
      caughtUp.layers.map((l) => l.file),
      localIndex(dataDir)!.layers.map((l) => l.file),
      "every local layer is in the remote index",
    );
    await assertRemoteConsistent(dataDir, caughtUp);

    // 3. The machine is lost; a new one starts from S3 alone and streams on.
    rmSync(dataDir, { recursive: true, force: true });
    await insert(8000);
    await pg.sql("CHECKPOINT");
    const end2 = await pg.sql("SELECT pg_current_wal_lsn()");
    await pg.switchWal();
    const fresh = join(dir, "fresh");
    const third = await cli([...args(fresh), "--end-lsn", end2]).done;
    assert.equal(third.status, 0, third.stderr);
    assert.match(third.stderr, /timeline attached from remote storage/);
    const attached = localIndex(fresh)!;
    assert.ok(attached.diskConsistentLsn >= parseLsn(end2));
    assert.ok(
      attached.layers.length > caughtUp.layers.length,
      "new layers were streamed after the attach",
    );

    // The export spans WAL from before and after the attach, byte for byte as in pg_wal.
    const out = join(dir, "export");
    const exp = await cli(["export", "--data-dir", fresh, "--timeline", "main", "--out", out]).done;
    assert.equal(exp.status, 0, exp.stderr);
    const whole = readdirSync(out).filter((f) => /^[0-9A-F]{24}$/.test(f));
    const attachedAt = `00000001${caughtUp.diskConsistentLsn.toString(16)}`; // for the message
    assert.ok(whole.length >= 4, `several whole segments: ${whole.join(", ")}`);
    for (const name of whole) {
      assert.ok(
        readFileSync(join(out, name)).equals(readFileSync(join(pg.walDir, name))),
        `${name} equals pg_wal/${name} (attached at ${attachedAt})`,
      );
    }
    const segOf = (lsn: bigint) => lsn / BigInt(pg.segmentSize);
    const segs = whole.map(
      (n) => BigInt(`0x${n.slice(8, 16)}`) * 256n + BigInt(`0x${n.slice(16)}`),
    );
    assert.ok(
      segs.some((s) => s === segOf(caughtUp.diskConsistentLsn)),
      "the segment holding the attach point is among them",
    );
  });
});
