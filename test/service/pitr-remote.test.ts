/**
 * Point-in-time recovery from remote storage alone: Tideline streams a PostgreSQL 15
 * primary's WAL and uploads it to S3 (s3rver), the local data dir is deleted, and a base
 * backup without WAL (`pg_basebackup -X none`) recovers to a restore point through
 * `restore_command = tideline restore-wal --remote s3://...`, with the table exactly as
 * the primary had it there (checksums equal).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, RequestContext, sleep, TaskKind } from "../../src/lifecycle/index.js";
import { RemoteUploader, remoteKeys } from "../../src/remote/index.js";
import { S3Storage } from "../../src/remote/s3_storage.js";
import { parseTimelineIndex, Timeline } from "../../src/timeline/index.js";
import { parseLsn, segmentStart } from "../../src/wal/index.js";
import { WalReceiver } from "../../src/walreceiver/index.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";
import { BUCKET, S3_CREDENTIALS, type S3Server, startS3Server } from "../support/s3.js";

const BIN = resolve("dist/service/cli/main.js");
const asRoot = process.getuid?.() === 0;

/** Whether the server's user can run this checkout's `tideline` (restore_command runs as it). */
function serverCanRunTideline(): boolean {
  const args = [process.execPath, BIN, "--version"];
  const r = asRoot
    ? spawnSync("runuser", ["-u", "postgres", "--", ...args])
    : spawnSync(args[0]!, args.slice(1));
  return r.status === 0;
}

const SKIP = !HAVE_PG15
  ? "PostgreSQL 15 is not installed"
  : !serverCanRunTideline()
    ? "the postgres user cannot run this checkout's dist/ (restore_command runs as that user)"
    : false;

/** A checksum of the whole table, in key order. */
const CHECKSUM =
  "SELECT count(*) || '|' || md5(coalesce(string_agg(id || ':' || balance, ',' ORDER BY id), '')) FROM accounts";

describe("point-in-time recovery from remote storage alone (S3)", { skip: SKIP }, () => {
  let pg: Cluster;
  let s3: S3Server;
  let storage: S3Storage;
  let dataDir: string;
  let timeline: Timeline | undefined;
  let restoredPort = 0;
  let backupDir = "";

  before(async () => {
    [pg, s3] = await Promise.all([
      startCluster({
        walSegmentSizeMiB: 1,
        settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
      }),
      startS3Server(),
    ]);
    storage = new S3Storage({
      bucket: BUCKET,
      prefix: "pitr",
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: S3_CREDENTIALS,
    });
    dataDir = mkdtempSync(join(tmpdir(), "tideline-pitr-remote-"));
  });

  after(async () => {
    await timeline?.shutdown("hard");
    if (restoredPort !== 0) {
      await pg.run("pg_ctl", ["-D", backupDir, "-m", "immediate", "-w", "stop"]).catch(() => {});
    }
    await pg?.stop();
    storage?.destroy();
    await s3?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("recovers a base backup to a restore point from S3 after the local data dir is deleted", async () => {
    const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
    const xlogpos = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    timeline = await Timeline.create({
      dataDir,
      id: "main",
      startLsn: segmentStart(xlogpos, 1 << 20),
      segmentSize: 1 << 20,
      // Small layers: several uploads, and segments spread over layers.
      layerSize: 256 << 10,
    });
    RemoteUploader.start(timeline, storage, { retry: { minMs: 20, factor: 2, maxMs: 500 } });
    WalReceiver.start(timeline, { sources: [`postgres://postgres@127.0.0.1:${pg.port}/postgres`] });

    backupDir = join(pg.dir, "backup");
    await pg.run("pg_basebackup", [
      "-h",
      pg.dir,
      "-p",
      String(pg.port),
      "-D",
      backupDir,
      "-X",
      "none",
      "-c",
      "fast",
    ]);
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

    const owner = asRoot
      ? (["-u", "-g"].map((f) =>
          Number(spawnSync("id", [f, "postgres"], { encoding: "utf8" }).stdout.trim()),
        ) as [number, number])
      : undefined;
    const write = (name: string, text: string, append = false) => {
      const path = join(backupDir, name);
      writeFileSync(path, append ? readFileSync(path, "utf8") + text : text);
      if (owner) chownSync(path, ...owner);
    };
    const url = `s3://${BUCKET}/pitr?endpoint=${s3.endpoint}&forcePathStyle=true&region=us-east-1`;
    const env = `AWS_ACCESS_KEY_ID=${S3_CREDENTIALS.accessKeyId} AWS_SECRET_ACCESS_KEY=${S3_CREDENTIALS.secretAccessKey}`;
    restoredPort = pg.port + 1000 > 65000 ? pg.port - 1000 : pg.port + 1000;
    const logPath = join(pg.dir, "restored-remote.log");
    write(
      "postgresql.auto.conf",
      [
        "",
        `port = ${restoredPort}`,
        `restore_command = '${env} ${process.execPath} ${BIN} restore-wal --remote "${url}" --timeline main %f %p'`,
        "recovery_target_name = 'before_the_mistake'",
        "recovery_target_action = 'promote'",
        "",
      ].join("\n"),
      true,
    );
    write("recovery.signal", "");
    await pg.run("pg_ctl", ["-D", backupDir, "-l", logPath, "-w", "-t", "120", "start"]);

    const query = (sql: string) =>
      pg
        .run("psql", [
          "-X",
          "-At",
          "-h",
          pg.dir,
          "-p",
          String(restoredPort),
          "-d",
          "postgres",
          "-c",
          sql,
        ])
        .then((r) => r.stdout.trim());
    let inRecovery = "t";
    for (let i = 0; i < 600 && inRecovery !== "f"; i++) {
      inRecovery = await query("SELECT pg_is_in_recovery()").catch(() => "t");
      if (inRecovery !== "f") await sleep(100, ctx.token);
    }
    const log = () => readFileSync(logPath, "utf8").slice(-4000);
    assert.equal(inRecovery, "f", `recovery ended and the server was promoted\n${log()}`);
    assert.match(log(), /restored log file "[0-9A-F]{24}" from archive/);
    assert.match(log(), /recovery stopping at restore point "before_the_mistake"/);
    assert.equal(await query(CHECKSUM), expected, "the table is exactly as at the restore point");
  });
});
