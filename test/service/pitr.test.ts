/**
 * Point-in-time recovery from a timeline: a base backup without WAL (`pg_basebackup -X
 * none`) plus Tideline's WAL, served through `restore_command = tideline restore-wal`,
 * recovers a new PostgreSQL 15 server to a restore point with exactly the data it had.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, RequestContext, sleep, TaskKind } from "../../src/lifecycle/index.js";
import { Timeline } from "../../src/timeline/index.js";
import { parseLsn, segmentStart } from "../../src/wal/index.js";
import { WalReceiver } from "../../src/walreceiver/index.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";

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

describe("point-in-time recovery through tideline restore-wal", { skip: SKIP }, () => {
  let pg: Cluster;
  let dataDir: string;
  let timeline: Timeline | undefined;
  let restoredPort = 0;
  let backupDir = "";

  before(async () => {
    pg = await startCluster({
      walSegmentSizeMiB: 1,
      settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
    });
    dataDir = mkdtempSync(join(tmpdir(), "tideline-pitr-"));
    chmodSync(dataDir, 0o755); // restore_command runs as the server's user
  });

  after(async () => {
    await timeline?.shutdown("hard");
    if (restoredPort !== 0) {
      await pg.run("pg_ctl", ["-D", backupDir, "-m", "immediate", "-w", "stop"]).catch(() => {});
    }
    await pg?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("recovers a base backup to a restore point with exactly the rows it had there", async () => {
    const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
    const xlogpos = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    timeline = await Timeline.create({
      dataDir,
      id: "main",
      startLsn: segmentStart(xlogpos, 1 << 20),
      segmentSize: 1 << 20,
    });
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
      INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 1000) g;
      SELECT pg_create_restore_point('before_the_mistake');
      DELETE FROM accounts WHERE id % 2 = 0;
      INSERT INTO accounts SELECT g, 0 FROM generate_series(1001, 1500) g;
    `);
    const expected = "1000|5005000"; // count and sum(balance) at the restore point
    // restore_command serves whole segments: close the one holding the restore point.
    await pg.switchWal();
    const end = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    await timeline.waitLsn(end, ctx, { timeoutMs: 30_000 });
    await timeline.flush(ctx); // another process (restore-wal) reads what is durable

    // Files in the backup belong to the server's user.
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
    restoredPort = pg.port + 1000 > 65000 ? pg.port - 1000 : pg.port + 1000;
    write(
      "postgresql.auto.conf",
      [
        "",
        `port = ${restoredPort}`,
        `restore_command = '${process.execPath} ${BIN} restore-wal --data-dir ${dataDir} --timeline main %f %p'`,
        "recovery_target_name = 'before_the_mistake'",
        "recovery_target_action = 'promote'",
        "",
      ].join("\n"),
      true,
    );
    write("recovery.signal", "");
    await pg.run("pg_ctl", [
      "-D",
      backupDir,
      "-l",
      join(pg.dir, "restored.log"),
      "-w",
      "-t",
      "120",
      "start",
    ]);

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
    for (let i = 0; i < 300 && inRecovery !== "f"; i++) {
      inRecovery = await query("SELECT pg_is_in_recovery()").catch(() => "t");
      if (inRecovery !== "f") await sleep(100, ctx.token);
    }
    const log = () => readFileSync(join(pg.dir, "restored.log"), "utf8").slice(-3000);
    assert.equal(inRecovery, "f", `recovery ended and the server was promoted\n${log()}`);
    assert.match(log(), /recovery stopping at restore point "before_the_mistake"/);
    assert.equal(await query("SELECT count(*) || '|' || sum(balance) FROM accounts"), expected);
    assert.equal(
      await pg.sql("SELECT count(*) FROM accounts"),
      "1000",
      "the primary went on: 500 deleted, 500 added",
    );
  });

  it("answers restore_command's misses with exit 1 and writes nothing", () => {
    const dest = join(pg.dir, "RECOVERYXLOG.test");
    const restore = (name: string) =>
      spawnSync(
        process.execPath,
        [BIN, "restore-wal", "--data-dir", dataDir, "--timeline", "main", name, dest],
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
