/**
 * Point-in-time recovery from a timeline: a base backup without WAL (`pg_basebackup -X
 * none`) plus Tideline's WAL, served through `restore_command = tideline restore-wal`,
 * recovers new PostgreSQL 15 servers to a restore point, an LSN and a time, each with exactly
 * the data the primary had there.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, RequestContext, sleep, TaskKind } from "../../src/lifecycle/index.js";
import type { Timeline } from "../../src/timeline/index.js";
import { parseLsn } from "../../src/wal/index.js";
import {
  PITR_SKIP,
  type Recovered,
  recoverBackup,
  startArchivedCluster,
  startArchiving,
  TIDELINE_BIN,
  takeBaseBackup,
} from "../support/pitr.js";
import type { Cluster } from "../support/postgres.js";

describe("point-in-time recovery through tideline restore-wal", { skip: PITR_SKIP }, () => {
  let pg: Cluster;
  let dataDir: string;
  let timeline: Timeline | undefined;
  let backupDir = "";
  const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
  /** What the primary held at each target: count and sum(balance) of accounts. */
  const expected = { name: "", lsn: "", time: "" };
  let targetLsn = "";
  let targetTime = "";

  before(async () => {
    pg = await startArchivedCluster();
    dataDir = mkdtempSync(join(tmpdir(), "tideline-pitr-"));
    chmodSync(dataDir, 0o755); // restore_command runs as the server's user
  });

  after(async () => {
    await timeline?.shutdown("hard");
    await pg?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const STATE = "SELECT count(*) || '|' || sum(balance) FROM accounts";
  const state = () => pg.sql(STATE);

  /** Recovers a copy of the base backup to `target` (recovery.conf lines) from the data dir. */
  const recoverTo = (name: string, target: string[]): Promise<Recovered> =>
    recoverBackup({
      cluster: pg,
      backupDir,
      restoreCommand: `${process.execPath} ${TIDELINE_BIN} restore-wal --data-dir ${dataDir} --timeline main %f %p`,
      target,
      name,
      stateSql: STATE,
    });

  it("archives a workload after a base backup taken without WAL", async () => {
    timeline = await startArchiving(pg, dataDir);

    backupDir = await takeBaseBackup(pg);
    await pg.sql(`
      CREATE TABLE accounts (id int PRIMARY KEY, balance int);
      INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 1000) g;
      SELECT pg_create_restore_point('before_the_mistake');
    `);
    expected.name = await state();
    await pg.sql("UPDATE accounts SET balance = balance + 1 WHERE id <= 100");
    targetLsn = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    expected.lsn = await state();
    await pg.sql("INSERT INTO accounts SELECT g, 1 FROM generate_series(1001, 1100) g");
    expected.time = await state();
    // Commit timestamps decide a time target: leave a clear second on both sides of it.
    await sleep(1100, ctx.token);
    targetTime = await pg.sql("SELECT clock_timestamp()");
    await sleep(1100, ctx.token);
    await pg.sql(`
      DELETE FROM accounts WHERE id % 2 = 0;
      INSERT INTO accounts SELECT g, 0 FROM generate_series(2001, 2500) g;
    `);
    assert.equal(await pg.sql("SELECT count(*) FROM accounts"), "1050", "the primary went on");
    assert.deepEqual(
      new Set([expected.name, expected.lsn, expected.time]).size,
      3,
      "three different states",
    );
    // restore_command serves whole segments: close the one holding the last change.
    await pg.switchWal();
    const end = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    await timeline.waitLsn(end, ctx, { timeoutMs: 30_000 });
    await timeline.flush(ctx); // another process (restore-wal) reads what is durable
  });

  it("recovers to a restore point with exactly the rows it had there", async () => {
    const r = await recoverTo("name", ["recovery_target_name = 'before_the_mistake'"]);
    assert.match(r.log, /recovery stopping at restore point "before_the_mistake"/);
    assert.equal(r.state, expected.name);
  });

  it("recovers to an LSN", async () => {
    const r = await recoverTo("lsn", [`recovery_target_lsn = '${targetLsn}'`]);
    assert.match(r.log, /recovery stopping after WAL location \(LSN\)/);
    assert.equal(r.state, expected.lsn);
  });

  it("recovers to a time", async () => {
    const r = await recoverTo("time", [`recovery_target_time = '${targetTime}'`]);
    assert.match(r.log, /recovery stopping before commit of transaction/);
    assert.equal(r.state, expected.time);
  });

  it("answers restore_command's misses with exit 1 and writes nothing", () => {
    const dest = join(pg.dir, "RECOVERYXLOG.test");
    const restore = (name: string) =>
      spawnSync(
        process.execPath,
        [TIDELINE_BIN, "restore-wal", "--data-dir", dataDir, "--timeline", "main", name, dest],
        { encoding: "utf8" },
      );
    const later = restore("0000000100000000000000FF");
    assert.equal(later.status, 1, "a segment not received yet");
    const otherTli = restore("000000020000000000000003");
    assert.equal(otherTli.status, 1, "a timeline the WAL never switched to");
    assert.equal(restore("00000002.history").status, 1);
    const bad = restore("not-a-wal-file");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /"not-a-wal-file" is not a WAL segment or history file name/);
    assert.equal(spawnSync("test", ["-e", dest]).status, 1, "nothing written");
  });
});
