/**
 * Point-in-time recovery from a timeline: a base backup without WAL (`pg_basebackup -X
 * none`) plus Tideline's WAL, served through `restore_command = tideline restore-wal`,
 * recovers new PostgreSQL 15 servers to a restore point, an LSN and a time, each with exactly
 * the data the primary had there.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, RequestContext, sleep, TaskKind } from "../../src/lifecycle/index.js";
import { freePort } from "../../src/service/local_postgres.js";
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
  const started: string[] = [];
  let backupDir = "";
  const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
  /** What the primary held at each target: count and sum(balance) of accounts. */
  const expected = { name: "", lsn: "", time: "" };
  let targetLsn = "";
  let targetTime = "";

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
    for (const dir of started)
      await pg.run("pg_ctl", ["-D", dir, "-m", "immediate", "-w", "stop"]).catch(() => {});
    await pg?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const state = () => pg.sql("SELECT count(*) || '|' || sum(balance) FROM accounts");

  /**
   * Restores a copy of the base backup with `target` (recovery.conf lines), waits for
   * promotion, and returns the accounts' state and the server log.
   */
  async function recoverTo(
    name: string,
    target: string[],
  ): Promise<{ state: string; log: string }> {
    const dir = join(pg.dir, `restored-${name}`);
    const cp = spawnSync("cp", ["-a", backupDir, dir]);
    assert.equal(cp.status, 0, String(cp.stderr));
    const owner = asRoot
      ? (["-u", "-g"].map((f) =>
          Number(spawnSync("id", [f, "postgres"], { encoding: "utf8" }).stdout.trim()),
        ) as [number, number])
      : undefined;
    const write = (file: string, text: string, append = false) => {
      const path = join(dir, file);
      writeFileSync(path, append ? readFileSync(path, "utf8") + text : text);
      if (owner) chownSync(path, ...owner);
    };
    const port = await freePort();
    write(
      "postgresql.auto.conf",
      [
        "",
        `port = ${port}`,
        `restore_command = '${process.execPath} ${BIN} restore-wal --data-dir ${dataDir} --timeline main %f %p'`,
        ...target,
        "recovery_target_action = 'promote'",
        "",
      ].join("\n"),
      true,
    );
    write("recovery.signal", "");
    const logFile = join(pg.dir, `restored-${name}.log`);
    started.push(dir);
    await pg.run("pg_ctl", ["-D", dir, "-l", logFile, "-w", "-t", "120", "start"]);
    const query = (sql: string) =>
      pg
        .run("psql", ["-X", "-At", "-h", pg.dir, "-p", String(port), "-d", "postgres", "-c", sql])
        .then((r) => r.stdout.trim());
    let inRecovery = "t";
    for (let i = 0; i < 300 && inRecovery !== "f"; i++) {
      inRecovery = await query("SELECT pg_is_in_recovery()").catch(() => "t");
      if (inRecovery !== "f") await sleep(100, ctx.token);
    }
    const log = readFileSync(logFile, "utf8").slice(-3000);
    assert.equal(inRecovery, "f", `recovery ended and the server was promoted\n${log}`);
    const result = await query("SELECT count(*) || '|' || sum(balance) FROM accounts");
    await pg.run("pg_ctl", ["-D", dir, "-m", "fast", "-w", "stop"]);
    started.splice(started.indexOf(dir), 1);
    return { state: result, log };
  }

  it("archives a workload after a base backup taken without WAL", async () => {
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
