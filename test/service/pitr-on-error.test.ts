/**
 * Point-in-time recovery when the WAL's source goes away in the middle: a stub of `tideline
 * server`'s WAL file endpoint (node:http, serving a live timeline through restoreWalFile as
 * the server does) closes for good when PostgreSQL 15 asks for the segment holding the second
 * half of a workload. Through `tideline restore-wal --server`, the default exits 2, which
 * PostgreSQL takes as the end of the archive: recovery ends there and the server is promoted
 * without that half, without a word. With `--on-error abort` it exits 255 and recovery stops
 * with FATAL instead; the files the timeline does not hold (the history file PostgreSQL looks
 * for first) still answer 1 on the way.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, RequestContext, TaskKind } from "../../src/lifecycle/index.js";
import { restoreWalFile, type Timeline } from "../../src/timeline/index.js";
import { parseLsn } from "../../src/wal/index.js";
import {
  PITR_SKIP,
  recoverBackup,
  recoverBackupExpectingFatal,
  startArchivedCluster,
  startArchiving,
  TIDELINE_BIN,
  takeBaseBackup,
} from "../support/pitr.js";
import type { Cluster } from "../support/postgres.js";

const STATE = "SELECT count(*) || '|' || sum(balance) FROM accounts";

/** A WAL file source that goes away when asked for one file. */
interface Source {
  url: string;
  /** The files asked for, in order. */
  asked: string[];
  close(): Promise<void>;
}

describe("point-in-time recovery when the WAL source goes away mid-recovery", {
  skip: PITR_SKIP,
}, () => {
  let pg: Cluster;
  let dataDir: string;
  let timeline: Timeline | undefined;
  let backupDir = "";
  const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
  /** The segment at which the source goes away: it holds the second half of the workload. */
  let gone = "";
  /** The table after the first half, and after both. */
  let firstHalf = "";
  let both = "";

  before(async () => {
    pg = await startArchivedCluster();
    dataDir = mkdtempSync(join(tmpdir(), "tideline-pitr-on-error-"));
    chmodSync(dataDir, 0o755);
    timeline = await startArchiving(pg, dataDir);

    backupDir = await takeBaseBackup(pg);
    await pg.sql(`
      CREATE TABLE accounts (id int PRIMARY KEY, balance int);
      INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 1000) g;
    `);
    firstHalf = await pg.sql(STATE);
    await pg.switchWal();
    await pg.sql("INSERT INTO accounts SELECT g, 1 FROM generate_series(1001, 2000) g");
    gone = await pg.sql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())");
    both = await pg.sql(STATE);
    assert.notEqual(firstHalf, both);
    // restore_command serves whole segments: close the one holding the second half.
    await pg.switchWal();
    const end = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    await timeline.waitLsn(end, ctx, { timeoutMs: 30_000 });
  });

  after(async () => {
    await timeline?.shutdown("hard");
    await pg?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /**
   * Serves the timeline's WAL files (404 `not_found` for those it does not hold) until asked
   * for `gone`: that request's connection is cut and the server closed, so every later one is
   * refused.
   */
  async function source(): Promise<Source> {
    const scratch = mkdtempSync(join(tmpdir(), "tideline-pitr-on-error-src-"));
    const asked: string[] = [];
    let n = 0;
    const server = createServer((req, res) => {
      void (async () => {
        const m = /^\/v1\/timelines\/main\/wal_files\/([^/]+)$/.exec(req.url ?? "");
        const name = decodeURIComponent(m?.[1] ?? "");
        asked.push(name);
        if (name === gone) {
          server.close();
          server.closeAllConnections();
          return;
        }
        const path = join(scratch, String(n++));
        if (m === null || !(await restoreWalFile(timeline!, name, path, ctx))) {
          res.writeHead(404, { "content-type": "application/json" });
          return res.end(JSON.stringify({ error: { code: "not_found", message: "not held" } }));
        }
        const bytes = readFileSync(path);
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": String(bytes.length),
        });
        res.end(bytes);
      })().catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
      asked,
      close: async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        rmSync(scratch, { recursive: true, force: true });
      },
    };
  }

  const restoreCommand = (url: string, onError: string) =>
    `${process.execPath} ${TIDELINE_BIN} restore-wal ${onError} --server ${url} --timeline main %f %p`;

  it("by default the outage ends recovery early: the server is promoted without the second half", async () => {
    const src = await source();
    try {
      const r = await recoverBackup({
        cluster: pg,
        backupDir,
        restoreCommand: restoreCommand(src.url, ""),
        target: [],
        name: "missing",
        stateSql: STATE,
      });
      assert.ok(src.asked.includes(gone), `PostgreSQL asked for ${gone}: ${src.asked}`);
      assert.match(r.log, /tideline restore-wal: cannot restore [0-9A-F]{24}: GET .* failed/);
      assert.equal(r.state, firstHalf, "promoted with the first half only");
    } finally {
      await src.close();
    }
  });

  it("with --on-error abort the outage stops recovery with FATAL instead", async () => {
    const src = await source();
    try {
      const r = await recoverBackupExpectingFatal({
        cluster: pg,
        backupDir,
        restoreCommand: restoreCommand(src.url, "--on-error abort"),
        target: [],
        name: "abort",
      });
      assert.ok(
        src.asked.some((f) => f.endsWith(".history")),
        `"not held" answered on the way: ${src.asked}`,
      );
      assert.match(r.log, /restored log file "[0-9A-F]{24}" from archive/);
      assert.match(
        r.log,
        new RegExp(
          `FATAL: +could not restore file "${gone}" from archive: child process exited with exit code 255`,
        ),
      );
      assert.equal(src.asked[src.asked.length - 1], gone, "nothing asked after the FATAL");
    } finally {
      await src.close();
    }
  });
});
