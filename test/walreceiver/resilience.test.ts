/**
 * The WAL receiver against a real PostgreSQL 15 server that misbehaves or is slow to serve:
 * restarts mid-stream, a 2 s wal_sender_timeout while ingest is held up by back-pressure,
 * a replication slot that must never move past durable WAL, and `tideline ingest` killed
 * with SIGKILL mid-stream and started again. Every time the timeline must hold exactly the
 * server's WAL: no gap, no duplicate.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, sleep } from "../../src/lifecycle/index.js";
import { Timeline, writeLayerFile } from "../../src/timeline/index.js";
import { formatLsn, parseLsn, segmentStart } from "../../src/wal/index.js";
import { WalReceiver } from "../../src/walreceiver/index.js";
import { assertExportEqualsPgWal } from "../support/export_check.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";
import { testContext } from "../timeline/source.js";
import { assertSameWal, type CliRun, cli, killChild, lsnOf, until, url } from "./server-wal.js";

const SEG = 1 << 20;

const ctx = testContext;

describe("a WAL receiver that rides out restarts, timeouts and crashes", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let pg: Cluster;
  let dir: string;
  const timelines: Timeline[] = [];
  let child: CliRun | undefined;

  before(async () => {
    pg = await startCluster({
      walSegmentSizeMiB: 1,
      settings: {
        wal_level: "replica",
        wal_keep_size: "1GB",
        max_wal_size: "1GB",
        wal_sender_timeout: "2s",
      },
    });
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    dir = mkdtempSync(join(tmpdir(), "tideline-resilience-"));
  });
  after(async () => {
    await killChild(child);
    for (const tl of timelines) await tl.shutdown("hard");
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function newTimeline(
    id: string,
    extra: Partial<Parameters<typeof Timeline.create>[0]> = {},
  ) {
    const startLsn = segmentStart(await lsnOf(pg, "pg_current_wal_insert_lsn()"), SEG);
    const tl = await Timeline.create({ dataDir: dir, id, startLsn, segmentSize: SEG, ...extra });
    timelines.push(tl);
    return tl;
  }

  it("reconnects with backoff after pg_ctl restart (fast, then immediate under load) and goes on with no gap", async () => {
    const tl = await newTimeline("restart");
    const receiver = WalReceiver.start(tl, { sources: [url(pg)], checkIntervalMs: 100 });
    const status = () => JSON.stringify(receiver.status());
    await pg.pgbench(["-n", "-c", "2", "-t", "300"]);
    let target = await lsnOf(pg, "pg_current_wal_insert_lsn()");
    await tl.waitLsn(target, ctx(), { timeoutMs: 30_000 });

    await pg.restartServer("fast");
    await pg.pgbench(["-n", "-c", "2", "-t", "300"]);
    target = await lsnOf(pg, "pg_current_wal_insert_lsn()");
    await tl
      .waitLsn(target, ctx(), { timeoutMs: 30_000 })
      .catch((e: Error) => assert.fail(`${e.message}\n${status()}`));
    const afterFast = receiver.status();
    assert.ok(afterFast.connectionFailures >= 1, `the restart broke the connection: ${status()}`);

    // A crash restart while WAL is being written: the client sees the connection drop.
    const load = pg.pgbench(["-n", "-c", "2", "-T", "3"]).catch(() => undefined);
    await until(
      () => tl.lastRecordLsn > target + 100_000n,
      () => `streaming the load: ${status()}`,
    );
    await pg.restartServer("immediate");
    await load;
    await pg.pgbench(["-n", "-c", "2", "-t", "300"]);
    target = await lsnOf(pg, "pg_current_wal_insert_lsn()");
    await tl
      .waitLsn(target, ctx(), { timeoutMs: 30_000 })
      .catch((e: Error) => assert.fail(`${e.message}\n${status()}`));

    const s = receiver.status();
    assert.equal(s.connected, true);
    assert.ok(
      s.connectionFailures > afterFast.connectionFailures,
      `the crash broke the connection: ${status()}`,
    );
    // Backoff, not a storm: each outage of about a second costs a handful of attempts.
    assert.ok(
      s.connectionAttempts <= 30,
      `${s.connectionAttempts} connection attempts: ${status()}`,
    );
    // The manager clears it at its next check (checkIntervalMs) after WAL flows again.
    await until(
      () => receiver.status().sources[0]?.failures === 0,
      () => `the failure count is cleared once WAL flows again: ${status()}`,
      5000,
    );
    await assertSameWal(tl, pg, tl.startLsn, tl.lastRecordLsn);
    await receiver.stop();
  });

  it("survives a 2 s wal_sender_timeout and a 2.5 s connectTimeout while ingest waits on back-pressure", async () => {
    // A backlog of about 24 MiB: the walsender fills the channel at once, the socket pauses.
    const tl0 = segmentStart(await lsnOf(pg, "pg_current_wal_insert_lsn()"), SEG);
    await pg.sql(
      "CREATE TABLE backlog AS SELECT g AS id, repeat('x', 100) AS v FROM generate_series(1, 150000) g",
    );
    const target = await lsnOf(pg, "pg_current_wal_insert_lsn()");
    assert.ok(target - tl0 > 16n << 20n, `backlog of ${target - tl0} bytes`);
    let slowFlushes = 3;
    let heldFlushes = 0;
    const tl = await newTimeline("slow", {
      startLsn: tl0,
      layerSize: 2 << 20,
      maxFrozenLayers: 1,
      writeLayer: async (layerDir, layer, meta, token) => {
        if (slowFlushes-- > 0) {
          await sleep(3000, token);
          heldFlushes++; // whole 3 s sleeps, not summed milliseconds (1 ms of jitter failed it)
        }
        return writeLayerFile(layerDir, layer, meta, token);
      },
    });
    const logBefore = pg.serverLog().length;
    // The socket is paused longer than connectTimeoutMs: that silence is ours, not the
    // source's, and must not count as missing keepalives.
    const receiver = WalReceiver.start(tl, {
      sources: [url(pg)],
      checkIntervalMs: 100,
      connectTimeoutMs: 2500,
    });
    await tl.waitLsn(target, ctx(), { timeoutMs: 60_000 });
    const s = receiver.status();
    assert.equal(heldFlushes, 3, "three flushes were each held up for 3 s");
    assert.equal(s.connectionFailures, 0, `no reconnect: ${JSON.stringify(s)}`);
    assert.equal(s.connectionAttempts, 1, `one connection: ${JSON.stringify(s)}`);
    assert.doesNotMatch(pg.serverLog().slice(logBefore), /replication timeout/);
    await assertSameWal(tl, pg, tl.startLsn, tl.lastRecordLsn);
    await receiver.stop();
  });

  it("keeps one connection to an idle source, and drops a silent one after connectTimeout", async () => {
    const tl = await newTimeline("idle");
    // wal_sender_timeout is 2 s, so the server pings only when it has not heard from us for
    // 1 s: with status every 500 ms it never does, and an idle stream carries no message
    // unless the client asks for one.
    const receiver = WalReceiver.start(tl, {
      sources: [url(pg)],
      checkIntervalMs: 100,
      connectTimeoutMs: 1500,
      retry: { minMs: 100, factor: 1.5, maxMs: 1000 },
    });
    const status = () => JSON.stringify(receiver.status());
    await until(
      () => receiver.status().connected,
      () => `connected: ${status()}`,
    );
    const target = await lsnOf(pg, "pg_current_wal_insert_lsn()");
    await tl.waitLsn(target, ctx(), { timeoutMs: 30_000 });
    // Nothing to wait for but time: an idle stream for several connect timeouts.
    await sleep(5000, new CancellationToken());
    assert.equal(receiver.status().connectionAttempts, 1, `no reconnect while idle: ${status()}`);

    // A walsender that stops answering (SIGSTOP) is given up after connectTimeout.
    const pid = await pg.sql(
      "SELECT pid FROM pg_stat_replication WHERE application_name = 'tideline'",
    );
    assert.match(pid, /^\d+$/, "one tideline walsender");
    process.kill(Number(pid), "SIGSTOP");
    try {
      await until(
        () => (receiver.status().switches.NoKeepAlives ?? 0) >= 1 && receiver.status().connected,
        () => `reconnected for lack of keepalives: ${status()}`,
      );
      await pg.sql(
        "INSERT INTO pgbench_history (tid, bid, aid, delta) SELECT 1, 1, g, g FROM generate_series(1, 2000) g",
      );
      const more = await lsnOf(pg, "pg_current_wal_insert_lsn()");
      await tl.waitLsn(more, ctx(), { timeoutMs: 30_000 });
    } finally {
      process.kill(Number(pid), "SIGCONT");
    }
    assert.equal(
      receiver.status().switches.ConnectionFailed,
      undefined,
      `counted by its reason: ${status()}`,
    );
    await assertSameWal(tl, pg, tl.startLsn, tl.lastRecordLsn);
    await receiver.stop();
  });

  it("never advances a slot past durable WAL", async () => {
    const slot = "tideline_resilience";
    let flushes = 0;
    const tl = await newTimeline("slot", {
      layerSize: 256 << 10,
      writeLayer: async (layerDir, layer, meta, token) => {
        flushes++;
        await sleep(200, token);
        return writeLayerFile(layerDir, layer, meta, token);
      },
    });
    const receiver = WalReceiver.start(tl, {
      sources: [url(pg)],
      slot,
      createSlot: true,
      statusIntervalMs: 200,
    });
    const status = () => JSON.stringify(receiver.status());
    const restartLsn = async () => {
      const text = await pg.sql(
        `SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = '${slot}'`,
      );
      return text === "" ? undefined : parseLsn(text);
    };
    // The slot is created reserving WAL from the server's position; our first status
    // report moves it to what is durable.
    await until(
      async () => {
        const r = await restartLsn();
        return r !== undefined && r <= tl.diskConsistentLsn;
      },
      () => `the slot follows the flush position: ${status()}`,
    );
    const load = pg.pgbench(["-n", "-c", "2", "-T", "4"]);
    let samples = 0;
    let loadDone = false;
    void load.finally(() => {
      loadDone = true;
    });
    while (!loadDone) {
      const r = await restartLsn();
      const durable = tl.diskConsistentLsn;
      assert.ok(
        r !== undefined && r <= durable,
        `slot restart_lsn ${r === undefined ? "NULL" : formatLsn(r)} <= durable ${formatLsn(durable)}`,
      );
      samples++;
    }
    await load;
    const durable = tl.diskConsistentLsn;
    assert.ok(samples >= 10 && flushes >= 3, `${samples} samples, ${flushes} flushes`);
    await until(
      async () => ((await restartLsn()) ?? 0n) >= durable,
      () => `the slot advanced to the durable ${formatLsn(durable)}: ${status()}`,
    );
    assert.ok(((await restartLsn()) ?? 0n) <= tl.diskConsistentLsn);
    await receiver.stop();
    await pg.sql(`SELECT pg_drop_replication_slot('${slot}')`);
  });

  it("tideline ingest killed with SIGKILL mid-stream, then started again: no gap, no duplicate", async () => {
    const dataDir = join(dir, "cli");
    const index = () => {
      try {
        return JSON.parse(
          readFileSync(join(dataDir, "timelines", "main", "index.json"), "utf8"),
        ) as {
          startLsn: string;
          diskConsistentLsn: string;
          layers: { start: string; end: string }[];
        };
      } catch {
        return undefined;
      }
    };
    const start = await lsnOf(pg, "pg_current_wal_insert_lsn()");
    child = cli([
      "ingest",
      "--source",
      url(pg),
      "--data-dir",
      dataDir,
      "--start-lsn",
      formatLsn(start),
      "--slot",
      "tideline_cli",
      "--create-slot",
    ]);
    // More than one 64 MiB layer, so some WAL is durable when the kill comes.
    await pg.sql(
      "CREATE TABLE big AS SELECT g AS id, repeat('y', 200) AS v FROM generate_series(1, 300000) g",
    );
    const load = pg.pgbench(["-n", "-c", "2", "-T", "8"]);
    try {
      await until(
        () => {
          const i = index();
          return i !== undefined && i.layers.length >= 1;
        },
        () => `a layer was flushed before the kill\n${child?.child.exitCode}`,
        40_000,
      );
      child.child.kill("SIGKILL");
      const killed = await child.done;
      assert.equal(killed.signal, "SIGKILL", killed.stderr);
    } finally {
      await load;
    }
    const durableAtKill = parseLsn(index()!.diskConsistentLsn);
    // The slot keeps everything the killed run had not made durable.
    const restart = await pg.sql(
      "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'tideline_cli'",
    );
    assert.ok(
      restart !== "" && parseLsn(restart) <= durableAtKill,
      `slot restart_lsn ${restart} <= durable ${formatLsn(durableAtKill)}`,
    );
    await pg.sql("CHECKPOINT");
    const end = await lsnOf(pg, "pg_current_wal_insert_lsn()");
    assert.ok(end > durableAtKill, "WAL was written after what the killed run made durable");
    await pg.switchWal();
    child = cli([
      "ingest",
      "--source",
      url(pg),
      "--data-dir",
      dataDir,
      "--end-lsn",
      formatLsn(end),
      "--slot",
      "tideline_cli",
    ]);
    const run = await child.done;
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /timeline reattached/);
    await pg.sql("SELECT pg_drop_replication_slot('tideline_cli')");

    const i = index()!;
    assert.ok(parseLsn(i.diskConsistentLsn) >= end);
    let at = i.startLsn;
    for (const layer of i.layers) {
      assert.equal(layer.start, at, `layers are contiguous: ${JSON.stringify(i.layers)}`);
      at = layer.end;
    }
    assert.equal(at, i.diskConsistentLsn);

    await assertExportEqualsPgWal({
      dataDir,
      out: join(dir, "cli-export"),
      walDir: pg.walDir,
      minSegments: 60,
    });
  });
});
