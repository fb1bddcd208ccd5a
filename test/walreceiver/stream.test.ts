/**
 * The WAL receiver and `tideline ingest` against a real PostgreSQL 15 primary.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn as spawnProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CancellationToken,
  RequestContext,
  TaskKind,
  TaskRegistry,
} from "../../src/lifecycle/index.js";
import { Timeline } from "../../src/timeline/index.js";
import { parseLsn } from "../../src/wal/index.js";
import { WalReceiver } from "../../src/walreceiver/index.js";
import { assertExportEqualsPgWal } from "../support/export_check.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";

const BIN = "dist/cli/main.js";
const url = (pg: Cluster) => `postgres://postgres@127.0.0.1:${pg.port}/postgres`;

interface Run {
  child: ChildProcess;
  done: Promise<{ status: number | null; stdout: string; stderr: string }>;
  /** Resolves once stderr matches `pattern` (rejects if the process ends first). */
  waitFor(pattern: RegExp): Promise<void>;
}

function start(args: string[]): Run {
  const child = spawnProcess(process.execPath, [BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => (stdout += d));
  child.stderr?.on("data", (d) => (stderr += d));
  const done = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (status) => resolve({ status, stdout, stderr })),
  );
  const waitFor = async (pattern: RegExp) => {
    let ended = false;
    void done.then(() => {
      ended = true;
    });
    while (!pattern.test(stderr)) {
      if (ended) throw new Error(`ended before printing ${pattern}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, done, waitFor };
}

const tideline = (args: string[]) => start(args).done;

describe("streaming from a real PostgreSQL 15 primary", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let pg: Cluster;
  let other: Cluster;
  let dir: string;

  before(async () => {
    [pg, other] = await Promise.all([
      startCluster({
        walSegmentSizeMiB: 1,
        settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
      }),
      startCluster({ walSegmentSizeMiB: 1 }),
    ]);
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    dir = mkdtempSync(join(tmpdir(), "tideline-stream-"));
  });
  after(async () => {
    await Promise.all([pg?.stop(), other?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("tideline ingest streams a pgbench workload; export equals the server's segments byte for byte", async () => {
    const dataDir = join(dir, "cli");
    const startLsn = await pg.sql("SELECT pg_current_wal_lsn()");
    const first = start([
      "ingest",
      "--source",
      url(pg),
      "--data-dir",
      dataDir,
      "--start-lsn",
      startLsn,
    ]);
    try {
      // A signal before the timeline exists would just cancel the start (exit 130).
      await first.waitFor(/"msg":"streaming"/);
      await pg.pgbench(["-n", "-c", "2", "-t", "1000"]);
      await pg.sql(
        "INSERT INTO pgbench_history (tid, bid, aid, delta) SELECT 1, 1, g, g FROM generate_series(1, 40000) g",
      );
    } finally {
      first.child.kill("SIGTERM");
    }
    const stopped = await first.done;
    assert.equal(stopped.status, 0, `SIGTERM: flush and exit 0\n${stopped.stderr}`);
    assert.match(stopped.stderr, /"mode":"freeze-and-flush"/);
    await pg.sql("CHECKPOINT");
    const end = await pg.sql("SELECT pg_current_wal_lsn()");
    await pg.switchWal();
    // A second run reattaches, resumes where the first one's durable WAL ended, and stops by itself.
    const run = await tideline([
      "ingest",
      "--source",
      url(pg),
      "--data-dir",
      dataDir,
      "--end-lsn",
      end,
    ]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /reached --end-lsn/);
    const index = JSON.parse(
      readFileSync(join(dataDir, "timelines", "main", "index.json"), "utf8"),
    );
    assert.ok(
      parseLsn(index.diskConsistentLsn) >= parseLsn(end),
      `durable ${index.diskConsistentLsn} >= ${end}`,
    );
    await assertExportEqualsPgWal({
      dataDir,
      out: join(dir, "export"),
      walDir: pg.walDir,
      minSegments: 3,
    });
  });

  it("tideline ingest --remote uploads every layer and the index; --end-lsn waits for the uploads", async () => {
    const dataDir = join(dir, "remote-run");
    const remoteDir = join(dir, "remote-store");
    const startLsn = await pg.sql("SELECT pg_current_wal_lsn()");
    await pg.sql(
      "INSERT INTO pgbench_history (tid, bid, aid, delta) SELECT 1, 1, g, g FROM generate_series(1, 20000) g",
    );
    const end = await pg.sql("SELECT pg_current_wal_lsn()");
    const run = await tideline([
      "ingest",
      "--source",
      url(pg),
      "--data-dir",
      dataDir,
      "--start-lsn",
      startLsn,
      "--end-lsn",
      end,
      "--remote",
      `file://${remoteDir}`,
    ]);
    assert.equal(run.status, 0, run.stderr);
    const index = JSON.parse(
      readFileSync(join(remoteDir, "timelines", "main", "index.json"), "utf8"),
    );
    assert.ok(
      parseLsn(index.remoteConsistentLsn) >= parseLsn(end),
      `remote ${index.remoteConsistentLsn} >= ${end}`,
    );
    for (const l of index.layers) {
      assert.ok(
        readFileSync(join(remoteDir, "timelines", "main", "layers", l.file)).equals(
          readFileSync(join(dataDir, "timelines", "main", "layers", l.file)),
        ),
        `${l.file} uploaded byte for byte`,
      );
    }
    const bad = await tideline([
      "ingest",
      "--source",
      url(pg),
      "--data-dir",
      dataDir,
      "--remote",
      "ftp://nowhere/x",
    ]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /Unsupported remote storage URL "ftp:\/\/nowhere\/x"/);
  });

  it("refuses a source of another cluster, writing nothing", async () => {
    const dataDir = join(dir, "cli");
    const indexBefore = readFileSync(join(dataDir, "timelines", "main", "index.json"), "utf8");
    const r = await tideline([
      "ingest",
      "--source",
      url(other),
      "--data-dir",
      dataDir,
      "--end-lsn",
      "0/1",
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /holds WAL of system/);
    assert.equal(
      readFileSync(join(dataDir, "timelines", "main", "index.json"), "utf8"),
      indexBefore,
    );
  });

  it("rejects a bad URL and an unreachable server with one line and nothing written", async () => {
    const dataDir = join(dir, "nothing");
    const bad = await tideline([
      "ingest",
      "--source",
      "postgres://user:s3cret@[::1",
      "--data-dir",
      dataDir,
    ]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /Invalid connection URL/);
    assert.doesNotMatch(bad.stderr, /s3cret/, "the password is never printed");
    const port = other.port + 17;
    const down = await tideline([
      "ingest",
      "--source",
      `postgres://u:s3cret@127.0.0.1:${port}/postgres`,
      "--data-dir",
      dataDir,
    ]);
    assert.equal(down.status, 1);
    assert.match(down.stderr, /cannot stream from any source/);
    assert.doesNotMatch(down.stderr, /s3cret/);
    assert.equal(down.stderr.trim().split("\n").length, 1, "one line");
    assert.equal(existsSync(join(dataDir, "timelines")), false);
  });

  it("runs manager -> handler -> poller under the timeline; stopping just the receiver leaves the timeline open", async () => {
    const registry = new TaskRegistry();
    const xlogpos = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    const tl = await Timeline.create({
      dataDir: join(dir, "api"),
      id: "api",
      startLsn: xlogpos - (xlogpos % (1n << 20n)),
      segmentSize: 1 << 20,
      registry,
    });
    const receiver = WalReceiver.start(tl, { sources: [url(pg)], registry, statusIntervalMs: 200 });
    const ctx = RequestContext.root(TaskKind.HttpRequest, new CancellationToken());
    await pg.sql(
      "INSERT INTO pgbench_history (tid, bid, aid, delta) SELECT 1, 1, g, g FROM generate_series(1, 5000) g",
    );
    const target = parseLsn(await pg.sql("SELECT pg_current_wal_insert_lsn()"));
    await tl.waitLsn(target, ctx, { timeoutMs: 30_000 });
    assert.ok(tl.lastRecordLsn >= target);
    const [manager] = registry.tree().filter((t) => t.kind === TaskKind.WalReceiverManager);
    assert.ok(manager, "a manager task");
    const handler = manager.children.find((t) => t.kind === TaskKind.WalReceiverConnectionHandler);
    assert.ok(handler, "the handler is the manager's child");
    assert.ok(
      handler.children.some((t) => t.kind === TaskKind.WalReceiverConnectionPoller),
      "the poller is the handler's child",
    );
    assert.equal(receiver.status().connected, true);
    assert.doesNotMatch(JSON.stringify(receiver.status()), /password/);

    await receiver.stop();
    assert.equal(
      registry.tree().some((t) => t.kind.startsWith("WalReceiver")),
      false,
      "no receiver task left",
    );
    assert.equal(tl.state, "active", "the timeline stays open");
    await pg.sql(
      "INSERT INTO pgbench_history (tid, bid, aid, delta) SELECT 1, 1, g, g FROM generate_series(1, 100) g",
    );
    const later = parseLsn(await pg.sql("SELECT pg_current_wal_insert_lsn()"));
    const again = WalReceiver.start(tl, { sources: [url(pg)], registry });
    await tl.waitLsn(later, ctx, { timeoutMs: 30_000 });
    assert.ok(again.status().connectionAttempts >= 1);
    const result = await tl.shutdown("freeze-and-flush");
    assert.equal(result.diskConsistentLsn, result.lastRecordLsn);
    assert.equal(registry.size, 0, "every task ended");
  });
});
