import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  CancellationToken,
  CancelledError,
  RequestContext,
  sleep,
  spawn,
  TaskKind,
  TaskRegistry,
} from "../../src/lifecycle/index.js";
import {
  Timeline,
  type TimelineOptions,
  TimelineShutdownError,
  WaitLsnTimeoutError,
  writeLayerFile,
} from "../../src/timeline/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 15000) g",
  "UPDATE t SET v = 'y' WHERE id % 3 = 0",
];

const root = testContext;

describe("Timeline shutdown, back-pressure and waitLsn", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  let n = 0;

  useWalSource(WORKLOAD, "shutdown", (s) => {
    ({ src, dir } = s);
  });

  function create(options: Partial<TimelineOptions> = {}) {
    return Timeline.create({
      dataDir: join(dir, `t${n++}`),
      id: "main",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 128 << 10,
      registry: new TaskRegistry(),
      ...options,
    });
  }

  /** A stand-in WAL receiver: a task in the timeline's WAL receiver scope that ingests the source. */
  function fakeReceiver(tl: Timeline, seed: number, pace = 0) {
    const scope = tl.walReceiverScope();
    const seen = { ingested: 0n, endedAt: -1n, lastRecordAtEnd: -1n };
    const task = spawn(
      { ...scope, name: "fake connection handler", kind: TaskKind.WalReceiverConnectionHandler },
      async (ctx) => {
        try {
          for (const p of pieces(src, tl.streamEnd, src.end, prng(seed), 20_000)) {
            await tl.ingest(p.lsn, p.bytes, ctx);
            seen.ingested = tl.streamEnd;
            if (pace > 0) await sleep(pace, ctx.token);
            else await new Promise((r) => setImmediate(r));
          }
        } finally {
          seen.endedAt = tl.streamEnd;
          seen.lastRecordAtEnd = tl.lastRecordLsn;
        }
      },
    );
    return { task, seen };
  }

  it("freeze-and-flush stops and awaits the WAL receiver, then flushes all it ingested, and nothing after", async () => {
    const tl = await create();
    const { task, seen } = fakeReceiver(tl, 1);
    while (seen.ingested < src.start + BigInt(src.bytes.length >> 1))
      await sleep(1, new CancellationToken());
    const result = await tl.shutdown("freeze-and-flush");
    assert.equal(task.isFinished, true, "the receiver ended before shutdown returned");
    assert.equal((await task.join()).status, "cancelled");
    assert.ok(seen.endedAt > src.start && seen.endedAt < src.end, "it was stopped mid-stream");
    assert.equal(tl.streamEnd, seen.endedAt, "no WAL was ingested after the receiver stopped");
    assert.equal(result.lastRecordLsn, seen.lastRecordAtEnd);
    assert.equal(result.diskConsistentLsn, result.lastRecordLsn, "everything ingested is durable");
    assert.equal(result.mode, "freeze-and-flush");
    assert.equal(tl.state, "stopped");
    await assert.rejects(tl.ingest(tl.streamEnd, Buffer.alloc(1), root()), TimelineShutdownError);
    const reopened = await Timeline.open({ dataDir: join(dir, `t${n - 1}`), id: "main" });
    assert.equal(reopened.diskConsistentLsn, result.diskConsistentLsn);
    assert.ok(
      (await reopened.readWal(src.start, reopened.diskConsistentLsn, root())).equals(
        src.bytes.subarray(0, Number(reopened.diskConsistentLsn - src.start)),
      ),
    );
    await reopened.shutdown("hard");
  });

  it("two concurrent shutdowns share one result; a later call returns it too", async () => {
    const tl = await create();
    const { task } = fakeReceiver(tl, 2);
    await sleep(5, new CancellationToken());
    const [a, b] = await Promise.all([
      tl.shutdown("freeze-and-flush"),
      tl.shutdown("freeze-and-flush"),
    ]);
    assert.equal(a, b);
    assert.equal(await tl.shutdown("hard"), a, "a hard shutdown after the end changes nothing");
    assert.equal(task.isFinished, true);
  });

  it("a hard shutdown during a slow freeze-and-flush cuts it short; nothing durable is damaged", async () => {
    let writes = 0;
    const slow: typeof writeLayerFile = async (d, layer, meta, token) => {
      writes++;
      await sleep(60_000, token); // a flush that would take a minute, but honours its token
      return writeLayerFile(d, layer, meta, token);
    };
    const dataDir = join(dir, `t${n}`);
    const tl = await create({ writeLayer: slow });
    const { task } = fakeReceiver(tl, 3);
    while (writes === 0) await sleep(1, new CancellationToken());
    const gentle = tl.shutdown("freeze-and-flush");
    await sleep(5, new CancellationToken());
    const hard = tl.shutdown("hard");
    assert.equal(gentle, hard, "the hard call joins the running shutdown");
    const result = await hard;
    assert.equal(result.mode, "hard");
    assert.equal(task.isFinished, true);
    assert.equal(result.diskConsistentLsn, src.start, "no layer was completed");
    const layers = readdirSync(join(dataDir, "timelines", "main", "layers"));
    assert.deepEqual(layers, [], "the cancelled write left no file behind");
    const reopened = await Timeline.open({ dataDir, id: "main" });
    assert.equal(reopened.diskConsistentLsn, src.start);
    await reopened.shutdown("hard");
  });

  it("hard shutdown drops unflushed WAL; reopening resumes at diskConsistentLsn", async () => {
    const dataDir = join(dir, `t${n}`);
    const tl = await create();
    const c = root();
    const half = src.start + BigInt(src.bytes.length >> 1);
    for (const p of pieces(src, src.start, half, prng(4))) await tl.ingest(p.lsn, p.bytes, c);
    await tl.flush(c);
    const durable = tl.diskConsistentLsn;
    for (const p of pieces(src, tl.streamEnd, src.end, prng(5))) await tl.ingest(p.lsn, p.bytes, c);
    const result = await tl.shutdown("hard");
    assert.ok(result.lastRecordLsn > result.diskConsistentLsn, "some WAL was still in memory");
    assert.ok(result.diskConsistentLsn >= durable);
    const reopened = await Timeline.open({ dataDir, id: "main" });
    assert.equal(reopened.diskConsistentLsn, result.diskConsistentLsn);
    assert.equal(reopened.lastRecordLsn, result.diskConsistentLsn);
    await reopened.shutdown("hard");
  });

  it("a quiet source's WAL becomes durable after maxLayerAgeMs, with no full layer and no flush call", async () => {
    const run = async (maxLayerAgeMs: number) => {
      const tl = await create({ layerSize: 64 << 20, maxLayerAgeMs });
      const c = root();
      const upTo = src.records[200]!.end;
      for (const p of pieces(src, src.start, upTo, prng(12))) await tl.ingest(p.lsn, p.bytes, c);
      for (let i = 0; i < 100 && tl.diskConsistentLsn < tl.lastRecordLsn; i++)
        await sleep(10, new CancellationToken());
      const durable = tl.diskConsistentLsn;
      const last = tl.lastRecordLsn;
      await tl.shutdown("hard");
      return { durable, last };
    };
    const aged = await run(50);
    assert.equal(aged.durable, aged.last, "frozen and flushed by age");
    const young = await run(3_600_000);
    assert.ok(young.durable < young.last, "without the age limit it would have stayed in memory");
  });

  describe("back-pressure", () => {
    async function peakMemory(maxFrozenLayers: number) {
      const layerSize = 64 << 10;
      const maxPiece = 20_000;
      const slow: typeof writeLayerFile = async (d, layer, meta, token) => {
        await sleep(20, token);
        return writeLayerFile(d, layer, meta, token);
      };
      const tl = await create({
        layerSize,
        maxFrozenLayers,
        maxFrozenBytes: 1 << 30,
        writeLayer: slow,
      });
      const c = root();
      let peak = 0;
      let peakLayers = 0;
      for (const p of pieces(src, src.start, src.end, prng(6), maxPiece)) {
        await tl.ingest(p.lsn, p.bytes, c);
        peak = Math.max(peak, tl.frozenBytes + tl.openLayerBytes);
        peakLayers = Math.max(peakLayers, tl.frozenLayers);
      }
      await tl.shutdown("freeze-and-flush");
      const bound = (maxFrozenLayers + 1) * (layerSize + maxPiece) + maxPiece;
      return { peak, peakLayers, bound };
    }

    it("with a slow flush, ingest waits and memory stays under the bound", async () => {
      const bounded = await peakMemory(2);
      assert.ok(bounded.peakLayers <= 3, `at most max+1 frozen layers, saw ${bounded.peakLayers}`);
      assert.ok(bounded.peak <= bounded.bound, `peak ${bounded.peak} <= bound ${bounded.bound}`);
      // The same run without an effective bound grows past it: the assertion above can fail.
      const unbounded = await peakMemory(1_000_000);
      assert.ok(
        unbounded.peak > bounded.bound,
        `unbounded peak ${unbounded.peak} exceeds ${bounded.bound}`,
      );
    });

    it("an ingest waiting for room is cancelled promptly by a hard shutdown", async () => {
      const stuck: typeof writeLayerFile = async (_d, _l, _m, token) => {
        await sleep(60_000, token);
        throw new Error("unreachable");
      };
      const tl = await create({ layerSize: 32 << 10, maxFrozenLayers: 1, writeLayer: stuck });
      const { task } = fakeReceiver(tl, 7);
      while (tl.frozenLayers < 2) await sleep(1, new CancellationToken());
      await sleep(5, new CancellationToken());
      assert.equal(task.isFinished, false, "the receiver is waiting for room");
      await tl.shutdown("hard");
      const outcome = await task.join();
      assert.equal(outcome.status, "cancelled");
    });
  });

  describe("waitLsn", () => {
    it("resolves once the LSN is ingested, at once when already there", async () => {
      const tl = await create();
      const target = src.records[500]!.end;
      const c = root();
      let done = false;
      const waiting = tl.waitLsn(target, c, { timeoutMs: 60_000 }).then(() => {
        done = true;
      });
      for (const p of pieces(src, src.start, src.end, prng(8))) {
        await tl.ingest(p.lsn, p.bytes, c);
        if (tl.lastRecordLsn < target) assert.equal(done, false, "not before it is reached");
      }
      await waiting;
      await tl.waitLsn(target, c);
      await tl.shutdown("hard");
    });

    it("times out with the LSNs and the WAL receiver's status in the message", async () => {
      const tl = await create();
      tl.walReceiverStatus = () => "connecting to 127.0.0.1:5432 (attempt 3)";
      await assert.rejects(
        tl.waitLsn(src.end, root(), { timeoutMs: 10 }),
        (e: unknown) =>
          e instanceof WaitLsnTimeoutError &&
          e.lsn === src.end &&
          /connecting to 127\.0\.0\.1:5432 \(attempt 3\)/.test(e.message),
      );
      await tl.shutdown("hard");
    });

    it("a shutdown wakes waiters with TimelineShutdownError; the caller's token with CancelledError", async () => {
      const tl = await create();
      const waiting = tl.waitLsn(src.end, root());
      const token = new CancellationToken();
      const cancelled = tl.waitLsn(src.end, RequestContext.root(TaskKind.HttpRequest, token));
      token.cancel("client went away");
      await assert.rejects(cancelled, CancelledError);
      assert.equal(tl.waitLsnWaiters, 1);
      const woken = assert.rejects(waiting, TimelineShutdownError);
      await tl.shutdown("hard");
      await woken;
      await assert.rejects(tl.waitLsn(src.end, root()), TimelineShutdownError);
    });

    it("a task of this timeline's WAL receiver that would wait gets an error at once, not a deadlock", async () => {
      const tl = await create();
      const other = await create();
      const c = root();
      for (const p of pieces(src, src.start, src.records[100]!.end, prng(9)))
        await tl.ingest(p.lsn, p.bytes, c);
      const reached = tl.lastRecordLsn;
      const scope = tl.walReceiverScope();
      const handler = spawn(
        { ...scope, name: "handler", kind: TaskKind.WalReceiverConnectionHandler },
        async (ctx) => {
          await tl.waitLsn(reached, ctx); // would not wait: fine
          await tl.waitLsn(reached + 1000n, ctx); // would wait: refused
        },
      );
      const outcome = await handler.join();
      assert.equal(outcome.status, "failed");
      assert.match(
        String((outcome as { error: Error }).error.message),
        /Self-deadlock: WalReceiverConnectionHandler of timeline "main"/,
      );
      // Another timeline's receiver waiting on this one is no deadlock: it just waits.
      const otherScope = other.walReceiverScope();
      const foreign = spawn(
        { ...otherScope, name: "other handler", kind: TaskKind.WalReceiverConnectionHandler },
        (ctx) => tl.waitLsn(reached + 1000n, ctx),
      );
      await sleep(5, new CancellationToken());
      assert.equal(foreign.state, "running");
      await other.shutdown("hard");
      assert.equal((await foreign.join()).status, "cancelled");
      await tl.shutdown("hard");
    });
  });
});
