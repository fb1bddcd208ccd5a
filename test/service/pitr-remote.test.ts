/**
 * Point-in-time recovery from remote storage alone: Tideline streams a PostgreSQL 15
 * primary's WAL and uploads it to S3 (s3rver), the local data dir is deleted, and a base
 * backup without WAL (`pg_basebackup -X none`) recovers to a restore point through
 * `restore_command = tideline restore-wal --remote s3://...`, with the table exactly as
 * the primary had it there (checksums equal).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, RequestContext, TaskKind } from "../../src/lifecycle/index.js";
import { RemoteUploader, remoteKeys } from "../../src/remote/index.js";
import type { S3Storage } from "../../src/remote/s3_storage.js";
import { parseTimelineIndex, type Timeline } from "../../src/timeline/index.js";
import { parseLsn } from "../../src/wal/index.js";
import {
  PITR_SKIP,
  recoverBackup,
  startArchivedCluster,
  startArchiving,
  TIDELINE_BIN,
  takeBaseBackup,
} from "../support/pitr.js";
import type { Cluster } from "../support/postgres.js";
import { S3_CREDENTIALS, type S3Server, startS3Server } from "../support/s3.js";

/** A checksum of the whole table, in key order. */
const CHECKSUM =
  "SELECT count(*) || '|' || md5(coalesce(string_agg(id || ':' || balance, ',' ORDER BY id), '')) FROM accounts";

describe("point-in-time recovery from remote storage alone (S3)", { skip: PITR_SKIP }, () => {
  let pg: Cluster;
  let s3: S3Server;
  let storage: S3Storage;
  let dataDir: string;
  let timeline: Timeline | undefined;

  before(async () => {
    [pg, s3] = await Promise.all([startArchivedCluster(), startS3Server()]);
    storage = s3.storage("pitr");
    dataDir = mkdtempSync(join(tmpdir(), "tideline-pitr-remote-"));
  });

  after(async () => {
    await timeline?.shutdown("hard");
    await pg?.stop();
    storage?.destroy();
    await s3?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("recovers a base backup to a restore point from S3 after the local data dir is deleted", async () => {
    const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
    // Small layers: several uploads, and segments spread over layers.
    timeline = await startArchiving(pg, dataDir, { layerSize: 256 << 10 }, (tl) =>
      RemoteUploader.start(tl, storage, { retry: { minMs: 20, factor: 2, maxMs: 500 } }),
    );

    const backupDir = await takeBaseBackup(pg);
    await pg.sql(`
      CREATE TABLE accounts (id int PRIMARY KEY, balance int);
      INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 3000) g;
      UPDATE accounts SET balance = balance + 7 WHERE id % 3 = 0;
    `);
    const expected = await pg.sql(CHECKSUM);
    await pg.sql("SELECT pg_create_restore_point('before_the_mistake')");
    await pg.sql(`
      DELETE FROM accounts WHERE id % 2 = 0;
      INSERT INTO accounts SELECT g, 0 FROM generate_series(3001, 4000) g;
    `);
    assert.notEqual(await pg.sql(CHECKSUM), expected, "the primary went on");
    // restore_command serves whole segments: close the one holding the restore point.
    await pg.switchWal();
    const end = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    await timeline.waitLsn(end, ctx, { timeoutMs: 30_000 });
    const result = await timeline.shutdown("freeze-and-flush");
    timeline = undefined;
    assert.ok(result.remoteConsistentLsn >= end, "everything up to the switch is in S3");
    const index = parseTimelineIndex(
      (await storage.get(remoteKeys.index("main"), ctx.token))!.toString("utf8"),
      "s3",
    );
    assert.equal(index.remoteConsistentLsn, result.remoteConsistentLsn);

    // The machine with the data dir is gone.
    rmSync(dataDir, { recursive: true, force: true });
    assert.equal(existsSync(dataDir), false);

    const url = s3.url("pitr");
    const env = `AWS_ACCESS_KEY_ID=${S3_CREDENTIALS.accessKeyId} AWS_SECRET_ACCESS_KEY=${S3_CREDENTIALS.secretAccessKey}`;
    const r = await recoverBackup({
      cluster: pg,
      backupDir,
      restoreCommand: `${env} ${process.execPath} ${TIDELINE_BIN} restore-wal --remote "${url}" --timeline main %f %p`,
      target: ["recovery_target_name = 'before_the_mistake'"],
      name: "remote",
      stateSql: CHECKSUM,
    });
    assert.match(r.log, /restored log file "[0-9A-F]{24}" from archive/);
    assert.match(r.log, /recovery stopping at restore point "before_the_mistake"/);
    assert.equal(r.state, expected, "the table is exactly as at the restore point");
  });
});
