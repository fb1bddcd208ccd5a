/**
 * Failover between a real PostgreSQL 15 primary and its streaming standby, given to the WAL
 * receiver as two sources of one cluster: stopping the source in use hands over to the other
 * with no gap, and promoting the standby while streaming from it makes the timeline follow
 * onto the new PostgreSQL timeline (history file kept). The timeline's bytes are compared
 * with the surviving server's pg_wal files, and `tideline export` with the server's segments.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Timeline } from "../../src/timeline/index.js";
import { formatLsn, type Lsn, parseSegmentFileName, segmentStart } from "../../src/wal/index.js";
import { WalReceiver } from "../../src/walreceiver/index.js";
import { type Cluster, HAVE_PG15, startCluster, startStandby } from "../support/postgres.js";
import { testContext } from "../timeline/source.js";
import {
  assertSameWal,
  cli,
  lsnOf,
  serverSegmentFile,
  type ThrottledProxy,
  throttledProxy,
  until,
  url,
} from "./server-wal.js";

const SEG = 1 << 20;
const ID = "failover";

const ctx = testContext;

describe("failover between a primary and its standby", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let primary: Cluster;
  let standby: Cluster;
  let cascade: Cluster | undefined;
  let dir: string;
  let tl: Timeline | undefined;
  let receiver: WalReceiver | undefined;
  let startLsn: Lsn;

  before(async () => {
    primary = await startCluster({
      walSegmentSizeMiB: 1,
      settings: {
        wal_level: "replica",
        wal_keep_size: "1GB",
        max_wal_size: "1GB",
        hot_standby: true,
      },
    });
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    standby = await startStandby(primary);
    dir = mkdtempSync(join(tmpdir(), "tideline-failover-"));
  });
  after(async () => {
    await tl?.shutdown("hard");
    await Promise.all([primary?.stop(), standby?.stop(), cascade?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const status = () => JSON.stringify(receiver?.status());

  it("streams from the standby; stopping it (immediate) hands over to the primary with no gap", async () => {
    const insert = await lsnOf(primary, "pg_current_wal_insert_lsn()");
    const flushed = await lsnOf(primary, "pg_current_wal_flush_lsn()");
    // The standby must hold the start segment and be able to serve from it.
    await until(
      async () => (await lsnOf(standby, "pg_last_wal_receive_lsn()")) >= flushed,
      () => "the standby caught up",
    );
    startLsn = segmentStart(insert, SEG);
    tl = await Timeline.create({ dataDir: dir, id: ID, startLsn, segmentSize: SEG });
    const timeline = tl;
    receiver = WalReceiver.start(timeline, {
      // The first source is tried first: the standby.
      sources: [url(standby), url(primary)],
      checkIntervalMs: 100,
      probeIntervalMs: 500,
      statusIntervalMs: 500,
      retry: { minMs: 100, factor: 1.5, maxMs: 1000 },
    });
    const r = receiver;
    const load = primary.pgbench(["-n", "-c", "2", "-T", "5"]);
    try {
      await until(
        () => r.status().source === url(standby) && timeline.lastRecordLsn > insert + 200_000n,
        () => `streaming from the standby: ${status()}`,
      );
      await standby.stopServer("immediate");
      await until(
        () => r.status().source === url(primary) && r.status().connected,
        () => `the primary took over: ${status()}`,
      );
    } finally {
      await load;
    }
    const target = await lsnOf(primary, "pg_current_wal_insert_lsn()");
    await timeline.waitLsn(target, ctx(), { timeoutMs: 30_000 });
    const s = r.status();
    assert.ok(s.connectionFailures >= 1, `the standby's end counted as a failure: ${status()}`);
    assert.ok(
      (s.switches.ConnectionFailed ?? 0) >= 1,
      `switch reason ConnectionFailed: ${status()}`,
    );
    assert.equal(s.sources.find((c) => c.source === url(standby))?.lastError !== undefined, true);
    await assertSameWal(timeline, primary, startLsn, timeline.lastRecordLsn);
  });

  it("stopping the primary (fast) hands over to the standby; promoting it, the timeline follows onto timeline 2", async () => {
    const timeline = tl;
    const r = receiver;
    assert.ok(timeline !== undefined && r !== undefined, "the previous test ran");
    await standby.startServer();
    const flushed = await lsnOf(primary, "pg_current_wal_flush_lsn()");
    await until(
      async () => (await lsnOf(standby, "pg_last_wal_receive_lsn()")) >= flushed,
      () => "the restarted standby caught up",
    );
    await until(
      () => r.status().sources.find((c) => c.source === url(standby))?.flushLsn !== undefined,
      () => `the standby was probed: ${status()}`,
    );
    const stopStarted = Date.now();
    await primary.stopServer("fast");
    const stopMs = Date.now() - stopStarted;
    await until(
      () => r.status().source === url(standby) && r.status().connected,
      () => `the standby took over: ${status()}`,
    );
    const beforePromote = timeline.lastRecordLsn;
    await standby.promote();
    assert.equal(await standby.sql("SELECT pg_is_in_recovery()"), "f");
    await standby.pgbench(["-n", "-c", "2", "-t", "200"]);
    const target = await lsnOf(standby, "pg_current_wal_insert_lsn()");
    await timeline.waitLsn(target, ctx(), { timeoutMs: 30_000 }).catch((e: Error) => {
      assert.fail(`${e.message}\n${status()}`);
    });
    assert.equal(timeline.pgTimeline, 2, "the timeline's newest WAL is on PostgreSQL timeline 2");
    const s = r.status();
    assert.ok((s.switches.TimelineEnded ?? 0) >= 1, `restarted on the next timeline: ${status()}`);
    const history = join(timeline.dir, "00000002.history");
    assert.ok(existsSync(history), "the history file is kept in the timeline's directory");
    assert.equal(
      readFileSync(history, "utf8"),
      readFileSync(join(standby.walDir, "00000002.history"), "utf8"),
    );
    assert.ok(timeline.lastRecordLsn > beforePromote);
    await assertSameWal(timeline, standby, startLsn, timeline.lastRecordLsn);
    assert.ok(stopMs < 20_000, `pg_ctl stop -m fast of the source in use took ${stopMs} ms`);
  });

  let exported: string[] = [];
  const out = () => join(dir, "export");

  it("tideline export: every whole segment equals the promoted server's file for it", async () => {
    const timeline = tl;
    assert.ok(timeline !== undefined);
    const result = await timeline.shutdown("freeze-and-flush");
    assert.equal(result.diskConsistentLsn, result.lastRecordLsn);
    tl = undefined;
    const run = await cli(["export", "--data-dir", dir, "--timeline", ID, "--out", out()]).done;
    assert.equal(run.status, 0, run.stderr);
    exported = readdirSync(out()).filter((f) => /^[0-9A-F]{24}$/.test(f));
    assert.ok(exported.length >= 3, `several whole segments: ${exported.join(", ")}`);
    for (const name of exported) {
      const server = serverSegmentFile(standby, parseSegmentFileName(name, SEG)!.segno);
      assert.ok(
        readFileSync(join(out(), name)).equals(readFileSync(join(standby.walDir, server))),
        `${name} equals pg_wal/${server}`,
      );
    }
  });

  it("tideline export names each segment by the timeline it belongs to, as pg_wal does, and writes the history file", {}, () => {
    const names = exported.map((name) =>
      serverSegmentFile(standby, parseSegmentFileName(name, SEG)!.segno),
    );
    assert.deepEqual(exported, names, "segments before the switch keep timeline 1's names");
    assert.ok(existsSync(join(out(), "00000002.history")), "the history file is exported too");
  });

  it("tideline ingest stopped across a promotion follows onto the next timeline when started again", async () => {
    // A standby of the promoted server, streaming its timeline 2; Tideline streams from it,
    // stops, the standby is promoted to timeline 3, and Tideline is started again.
    const upstream = await lsnOf(standby, "pg_current_wal_flush_lsn()");
    const replica = await startStandby(standby);
    cascade = replica;
    await until(
      async () => (await lsnOf(replica, "pg_last_wal_receive_lsn()")) >= upstream,
      () => "the cascaded standby caught up",
    );
    const dataDir = join(dir, "cli");
    const start = await lsnOf(replica, "pg_last_wal_receive_lsn()");
    await standby.pgbench(["-n", "-c", "2", "-t", "200"]);
    const first = await lsnOf(standby, "pg_current_wal_insert_lsn()");
    const run1 = await cli([
      "ingest",
      "--source",
      url(replica),
      "--data-dir",
      dataDir,
      "--start-lsn",
      formatLsn(start),
      "--end-lsn",
      formatLsn(first),
    ]).done;
    assert.equal(run1.status, 0, run1.stderr);

    await replica.promote();
    await replica.pgbench(["-n", "-c", "2", "-t", "200"]);
    const second = await lsnOf(replica, "pg_current_wal_insert_lsn()");
    const run2 = await cli([
      "ingest",
      "--source",
      url(replica),
      "--data-dir",
      dataDir,
      "--end-lsn",
      formatLsn(second),
    ]).done;
    assert.equal(run2.status, 0, run2.stderr);
    assert.match(run2.stderr, /reached --end-lsn/);
    const tlDir = join(dataDir, "timelines", "main");
    assert.equal(
      readFileSync(join(tlDir, "00000003.history"), "utf8"),
      readFileSync(join(replica.walDir, "00000003.history"), "utf8"),
    );
    const index = JSON.parse(readFileSync(join(tlDir, "index.json"), "utf8")) as {
      pgTimeline: number;
    };
    assert.equal(index.pgTimeline, 3);

    const out = join(dir, "cli-export");
    const run = await cli(["export", "--data-dir", dataDir, "--timeline", "main", "--out", out])
      .done;
    assert.equal(run.status, 0, run.stderr);
    const whole = readdirSync(out).filter((f) => /^[0-9A-F]{24}$/.test(f));
    assert.ok(whole.length >= 2, `whole segments: ${whole.join(", ")}`);
    for (const name of whole) {
      const server = serverSegmentFile(replica, parseSegmentFileName(name, SEG)!.segno);
      assert.ok(
        readFileSync(join(out, name)).equals(readFileSync(join(replica.walDir, server))),
        `${name} equals pg_wal/${server}`,
      );
    }
  });
});

describe("promotion while the standby holds only part of a record", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let primary: Cluster | undefined;
  let standby: Cluster | undefined;
  let proxy: ThrottledProxy | undefined;
  let dir: string | undefined;
  let tl: Timeline | undefined;

  after(async () => {
    await tl?.shutdown("hard");
    proxy?.close();
    await Promise.all([primary?.stop(), standby?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("drops the received bytes past the switch point and follows onto timeline 2", {}, async () => {
    primary = await startCluster({
      walSegmentSizeMiB: 1,
      settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
    });
    // The standby streams through a throttling proxy, so it can be cut off mid-record.
    proxy = await throttledProxy(primary.port);
    standby = await startStandby(primary, {
      settings: {
        primary_conninfo: `host=127.0.0.1 port=${proxy.port} user=postgres application_name=standby`,
      },
    });
    const s = standby;
    const flushed = await lsnOf(primary, "pg_current_wal_flush_lsn()");
    await until(
      async () => (await lsnOf(s, "pg_last_wal_receive_lsn()")) >= flushed,
      () => "the standby caught up",
    );
    dir = mkdtempSync(join(tmpdir(), "tideline-partial-"));
    const timeline = await Timeline.create({
      dataDir: dir,
      id: "partial",
      startLsn: segmentStart(flushed, SEG),
      segmentSize: SEG,
    });
    tl = timeline;
    const receiver = WalReceiver.start(timeline, {
      sources: [url(s)],
      checkIntervalMs: 100,
      retry: { minMs: 100, factor: 1.5, maxMs: 1000 },
    });
    // One 32 MiB record; the standby gets 2 MiB of it at most a few MiB/s, then no more.
    const recordStart = await lsnOf(primary, "pg_current_wal_insert_lsn()");
    await primary.sql("SELECT pg_logical_emit_message(false, 'big', repeat('x', 32 << 20))");
    await until(
      async () => (await lsnOf(s, "pg_last_wal_receive_lsn()")) >= recordStart + (2n << 20n),
      () => "the standby received part of the record",
    );
    proxy.hold();
    const received = await lsnOf(s, "pg_last_wal_receive_lsn()");
    assert.ok(received < recordStart + (32n << 20n), "the standby holds only part of the record");
    await until(
      () => timeline.streamEnd >= received,
      () =>
        `Tideline received the partial record from the standby (${formatLsn(timeline.streamEnd)})`,
    );
    const switchPoint = timeline.lastRecordLsn;
    assert.ok(timeline.streamEnd > switchPoint);
    await primary.stopServer("immediate");
    await s.promote();
    await s.sql("CREATE TABLE after_promotion (g int); INSERT INTO after_promotion VALUES (1)");
    const target = await lsnOf(s, "pg_current_wal_insert_lsn()");
    // The new timeline's WAL may not have reached the partial record's end yet; either way
    // the receiver must drop the incomplete tail, start timeline 2 at the switch point and
    // hold exactly the server's WAL.
    await timeline
      .waitLsn(target, ctx(), { timeoutMs: 10_000 })
      .catch((e: Error) => assert.fail(`${e.message}\n${JSON.stringify(receiver.status())}`));
    assert.equal(timeline.pgTimeline, 2);
    await assertSameWal(timeline, s, timeline.startLsn, timeline.lastRecordLsn);
  });
});

/** A primary, a standby fed through a proxy that can hold its stream, and a timeline. */
interface ThrottledPair {
  primary?: Cluster;
  standby?: Cluster;
  proxy?: ThrottledProxy;
  dir?: string;
  tl?: Timeline;
}

/**
 * Starts `pair`'s servers (the standby caught up) and creates timeline `id` at the segment
 * of the primary's flush LSN; `prepare` runs on the primary before the standby starts.
 */
async function startThrottledPair(
  pair: ThrottledPair,
  id: string,
  prepare: (p: Cluster) => Promise<unknown> = async () => {},
) {
  const p = await startCluster({
    walSegmentSizeMiB: 1,
    settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
  });
  pair.primary = p;
  await prepare(p);
  const proxy = await throttledProxy(p.port, 4 << 20);
  pair.proxy = proxy;
  const s = await startStandby(p, {
    settings: {
      primary_conninfo: `host=127.0.0.1 port=${proxy.port} user=postgres application_name=standby`,
    },
  });
  pair.standby = s;
  const flushed = await lsnOf(p, "pg_current_wal_flush_lsn()");
  await until(
    async () => (await lsnOf(s, "pg_last_wal_receive_lsn()")) >= flushed,
    () => "the standby caught up",
  );
  pair.dir = mkdtempSync(join(tmpdir(), `tideline-${id}-`));
  const timeline = await Timeline.create({
    dataDir: pair.dir,
    id,
    startLsn: segmentStart(flushed, SEG),
    segmentSize: SEG,
  });
  pair.tl = timeline;
  return { p, s, proxy, timeline, flushed };
}

async function stopThrottledPair(pair: ThrottledPair): Promise<void> {
  await pair.tl?.shutdown("hard");
  // Before the servers: a held proxy would keep the primary's shutdown waiting.
  pair.proxy?.close();
  await Promise.all([pair.primary?.stop(), pair.standby?.stop()]);
  if (pair.dir) rmSync(pair.dir, { recursive: true, force: true });
}

describe("a standby that stops receiving", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  const pair: ThrottledPair = {};
  after(() => stopThrottledPair(pair));

  it("is left for the primary after laggingWalTimeout (NoWalTimeout), with no gap", async () => {
    const { p, s, proxy, timeline, flushed } = await startThrottledPair(pair, "lagging", (p) =>
      p.pgbench(["-i", "-s", "1", "-q"]),
    );
    const receiver = WalReceiver.start(timeline, {
      sources: [url(s), url(p)],
      checkIntervalMs: 100,
      probeIntervalMs: 300,
      laggingWalTimeoutMs: 1500,
    });
    const status = () => JSON.stringify(receiver.status());
    await until(
      () => receiver.status().source === url(s) && timeline.lastRecordLsn >= flushed,
      () => `streaming from the standby: ${status()}`,
    );
    // The standby hears nothing more from its primary, which goes on writing.
    proxy.hold();
    await p.pgbench(["-n", "-c", "2", "-t", "300"]);
    const target = await lsnOf(p, "pg_current_wal_insert_lsn()");
    await until(
      () => receiver.status().source === url(p),
      () => `switched to the primary: ${status()}`,
    );
    await timeline.waitLsn(target, ctx(), { timeoutMs: 30_000 });
    const st = receiver.status();
    assert.equal(st.switches.NoWalTimeout, 1, `one switch, for NoWalTimeout: ${status()}`);
    assert.equal(st.switches.ConnectionFailed, undefined, `no failure: ${status()}`);
    assert.equal(st.connectionFailures, 0);
    await assertSameWal(timeline, p, timeline.startLsn, timeline.lastRecordLsn);
  });
});

describe("a promoted standby that never had WAL Tideline holds", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  const pair: ThrottledPair = {};
  after(() => stopThrottledPair(pair));

  it("is refused for good with a clear error: the timeline diverged from the source's history", async () => {
    const { p, s, proxy, timeline } = await startThrottledPair(pair, "diverged");
    const first = WalReceiver.start(timeline, { sources: [url(p)], checkIntervalMs: 100 });
    // The standby stops receiving; Tideline gets more WAL from the primary, which then dies.
    proxy.hold();
    await p.sql("CREATE TABLE lost AS SELECT g FROM generate_series(1, 20000) g");
    const lost = await lsnOf(p, "pg_current_wal_insert_lsn()");
    await timeline.waitLsn(lost, ctx(), { timeoutMs: 30_000 });
    await first.stop();
    await p.stopServer("immediate");
    await s.promote();
    assert.ok((await lsnOf(s, "pg_current_wal_insert_lsn()")) < lost, "the standby never had it");

    const second = WalReceiver.start(timeline, {
      sources: [url(s)],
      checkIntervalMs: 100,
      retry: { minMs: 100, factor: 1.5, maxMs: 500 },
    });
    await until(
      () => second.task.isFinished,
      () => `the receiver gave up on a diverged source: ${JSON.stringify(second.status())}`,
      10_000,
    );
    const outcome = await second.task.join();
    assert.equal(outcome.status, "failed");
    assert.match(
      String((outcome as { error?: Error }).error?.message),
      /No usable WAL source: .*its history leaves timeline 1 at .* the histories diverged/,
    );
    assert.equal(second.status().connectionAttempts, 1, "refused at the first attempt");
  });
});
