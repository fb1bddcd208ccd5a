/**
 * Timeline benchmarks on real pgbench WAL (PostgreSQL 15).
 *
 * (a) Ingest fed from memory: decode + index + layer write + fsync, with the default 64 MiB
 *     layers, in 128 KiB pieces (the size of replication messages), ending with a flush so
 *     every byte is in fsynced layer files. MB/s and records/s, median of 3 (a fresh data
 *     directory each time).
 * (b) `waitLsn` wake latency: several waiters wait for the end of a record whose first half
 *     has been ingested; then the piece completing it is ingested, and each waiter stamps the
 *     time its continuation runs. Reported from two instants: the `ingest()` call (includes
 *     decoding the piece) and `ingest()`'s synchronous return (the LSN has been advanced by
 *     then: advance runs before ingest's first await). 10k waits, p50/p99/max.
 *
 * The WAL comes from `$TIDELINE_BENCH_PGWAL` (a stopped cluster's pg_wal) when set; otherwise
 * from a cache under /tmp (`tideline-bench-timeline-wal`), made once by a throwaway
 * PostgreSQL 15 cluster running pgbench (-i -s 10, then -c 2 -T 20).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CancellationToken, RequestContext, TaskKind } from "../src/lifecycle/index.js";
import { Timeline } from "../src/timeline/index.js";
import { loadWal, type Wal, walDir } from "./wal_source.js";

const MB = 1e6;
const MiB = 1 << 20;
const PIECE = 128 << 10;
/** A timeline for `wal`, with the 64 MiB layers BENCHMARKS.md's figures are for. */
function createTimeline(wal: Wal, dataDir: string, id: string): Promise<Timeline> {
  return Timeline.create({
    layerSize: 64 << 20,
    dataDir,
    id,
    startLsn: wal.start,
    segmentSize: wal.segmentSize,
  });
}

function ctx(): RequestContext {
  return RequestContext.root(TaskKind.UnitTest, new CancellationToken());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function benchIngest(wal: Wal): Promise<void> {
  const times: number[] = [];
  let layers = 0;
  for (let rep = 0; rep < 3; rep++) {
    const dataDir = mkdtempSync(join(tmpdir(), "tideline-bench-tl-"));
    try {
      globalThis.gc?.();
      const c = ctx();
      const t0 = process.hrtime.bigint();
      const tl = await createTimeline(wal, dataDir, "bench");
      for (let off = 0; off < wal.bytes.length; off += PIECE) {
        // The timeline keeps what it is given; a subarray of the source is enough here.
        const piece = wal.bytes.subarray(off, Math.min(off + PIECE, wal.bytes.length));
        await tl.ingest(wal.start + BigInt(off), piece, c);
      }
      await tl.flush(c);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (tl.diskConsistentLsn !== wal.start + BigInt(wal.bytes.length))
        throw new Error("the timeline did not take all the WAL");
      layers = tl.layerFiles.length;
      await tl.shutdown("hard");
      times.push(s);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  const s = median(times);
  const mb = wal.bytes.length / MB;
  console.log(
    `ingest from memory (decode + index + 64 MiB layers + fsync), ${(wal.bytes.length / MiB).toFixed(0)} MiB, ${wal.records.length} records, ${layers} layer files, 128 KiB pieces:`,
  );
  console.log(
    `  median of 3: ${s.toFixed(3)} s = ${(mb / s).toFixed(0)} MB/s, ${(wal.records.length / s / 1e6).toFixed(2)} M records/s (runs: ${times.map((x) => x.toFixed(3)).join(", ")} s)`,
  );
}

async function benchWaitLsn(wal: Wal): Promise<void> {
  const WAITERS = 4;
  const ROUNDS = 2500; // x WAITERS = 10k waits
  const dataDir = mkdtempSync(join(tmpdir(), "tideline-bench-wait-"));
  const fromCall = new Float64Array(ROUNDS * WAITERS);
  const fromAdvance = new Float64Array(ROUNDS * WAITERS);
  try {
    const tl = await createTimeline(wal, dataDir, "wait");
    const c = ctx();
    // Waiters for far-away LSNs stay pending throughout, so the wake-up is not the only work.
    const far = wal.start + BigInt(wal.bytes.length) + 1n;
    const parked = Array.from({ length: WAITERS }, () =>
      tl.waitLsn(far, c, { timeoutMs: 3_600_000 }).catch(() => undefined),
    );
    const at = (lsn: bigint) => Number(lsn - wal.start);
    // Records long enough to be split in two, spread through the first few segments.
    const targets = wal.records.filter((r) => r.end - r.lsn >= 16n).slice(100, 100 + ROUNDS * 3);
    let n = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const rec = targets[i * 3]!;
      const mid = rec.lsn + (rec.end - rec.lsn) / 2n;
      await tl.ingest(tl.streamEnd, wal.bytes.subarray(at(tl.streamEnd), at(mid)), c);
      if (tl.lastRecordLsn >= rec.end) throw new Error("the record is already complete");
      const woke: bigint[] = [];
      const waits = Array.from({ length: WAITERS }, async () => {
        await tl.waitLsn(rec.end, c, { timeoutMs: 60_000 });
        woke.push(process.hrtime.bigint());
      });
      // Let the waiters be pending across an event loop turn, as they would be in a server.
      await new Promise((resolve) => setImmediate(resolve));
      const piece = wal.bytes.subarray(at(mid), at(rec.end));
      const t0 = process.hrtime.bigint();
      const done = tl.ingest(mid, piece, c);
      const tAdvanced = process.hrtime.bigint();
      await Promise.all(waits);
      await done;
      for (const t of woke) {
        fromCall[n] = Number(t - t0) / 1e3;
        fromAdvance[n] = Number(t - tAdvanced) / 1e3;
        n++;
      }
    }
    await tl.shutdown("hard");
    await Promise.all(parked);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  fromCall.sort();
  fromAdvance.sort();
  const row = (label: string, xs: Float64Array) =>
    console.log(
      `  ${label}: p50 ${quantile(xs, 0.5).toFixed(1)} µs, p99 ${quantile(xs, 0.99).toFixed(1)} µs, max ${xs[xs.length - 1]!.toFixed(1)} µs`,
    );
  console.log(
    `waitLsn wake latency, ${fromCall.length} waits (${WAITERS} waiting for the record, ${WAITERS} more parked on a far LSN):`,
  );
  row("from the ingest() call that completes the record", fromCall);
  row("from ingest()'s synchronous return (after advance)", fromAdvance);
}

/**
 * Wake latency while streaming everything in 128 KiB pieces with the default 64 MiB layers:
 * before each piece, a waiter waits for the last record end that piece completes. Unlike
 * the steady-state numbers above, this includes the pieces whose ingest freezes a full layer.
 */
async function benchWaitLsnStreaming(wal: Wal): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "tideline-bench-wait-"));
  const lat: number[] = [];
  const latAdvance: number[] = [];
  try {
    const tl = await createTimeline(wal, dataDir, "wait");
    const c = ctx();
    let r = 0;
    for (let off = 0; off < wal.bytes.length; off += PIECE) {
      const stop = Math.min(off + PIECE, wal.bytes.length);
      const stopLsn = wal.start + BigInt(stop);
      while (r + 1 < wal.records.length && wal.records[r + 1]!.end <= stopLsn) r++;
      const target = wal.records[r]!.end;
      let woke = 0n;
      const wait =
        target > tl.lastRecordLsn && target <= stopLsn
          ? (async () => {
              await tl.waitLsn(target, c, { timeoutMs: 60_000 });
              woke = process.hrtime.bigint();
            })()
          : undefined;
      if (wait !== undefined) await new Promise((resolve) => setImmediate(resolve));
      const t0 = process.hrtime.bigint();
      const done = tl.ingest(wal.start + BigInt(off), wal.bytes.subarray(off, stop), c);
      const tAdvanced = process.hrtime.bigint();
      await done;
      if (wait !== undefined) {
        await wait;
        lat.push(Number(woke - t0) / 1e3);
        latAdvance.push(Number(woke - tAdvanced) / 1e3);
      }
    }
    await tl.shutdown("hard");
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  console.log(
    `waitLsn wake latency while streaming all of it in 128 KiB pieces (64 MiB layers, so a few pieces freeze a layer), ${lat.length} waits:`,
  );
  for (const [label, raw] of [
    ["from the ingest() call (includes decoding the piece)", lat],
    ["from ingest()'s synchronous return (after advance)", latAdvance],
  ] as const) {
    const xs = Float64Array.from(raw).sort();
    console.log(
      `  ${label}: p50 ${quantile(xs, 0.5).toFixed(1)} µs, p99 ${quantile(xs, 0.99).toFixed(1)} µs, p99.9 ${quantile(xs, 0.999).toFixed(1)} µs, max ${xs[xs.length - 1]!.toFixed(1)} µs`,
    );
  }
}

/**
 * (c) Reads from layer files: `records()` over a range (decoded as `waldump --json`), and
 * `blockHistory()` of busy blocks. Not a goal of the issue; here to track the cost per record.
 */
async function benchReads(wal: Wal): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "tideline-bench-reads-"));
  try {
    const size = Math.min(wal.bytes.length, 64 * MiB);
    const tl = await createTimeline(wal, dataDir, "reads");
    const c = ctx();
    for (let off = 0; off < size; off += PIECE)
      await tl.ingest(
        wal.start + BigInt(off),
        wal.bytes.subarray(off, Math.min(off + PIECE, size)),
        c,
      );
    await tl.flush(c);
    const recs = wal.records.filter((r) => r.end <= tl.lastRecordLsn);
    const from = recs[1000]!.lsn;
    const to = recs[Math.min(recs.length - 1, 3000)]!.lsn;
    const t0 = process.hrtime.bigint();
    let n = 0;
    for await (const _ of tl.records(from, to, c)) n++;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const raw0 = process.hrtime.bigint();
    const bytes = await tl.readWal(from, to, c);
    const rawS = Number(process.hrtime.bigint() - raw0) / 1e9;
    console.log(
      `reads from one 64 MiB layer file: records() ${n} records (${(bytes.length / MiB).toFixed(1)} MiB) in ${s.toFixed(2)} s = ${(n / s).toFixed(0)} records/s; readWal of the same range ${(rawS * 1e3).toFixed(1)} ms`,
    );
    await tl.shutdown("hard");
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const dir = await walDir();
  if (dir === undefined) {
    console.log("skipped: PostgreSQL 15 is not installed and TIDELINE_BENCH_PGWAL is not set");
    return;
  }
  const wal = loadWal(dir);
  const which = process.env.TIDELINE_BENCH_ONLY;
  if (which === undefined || which === "ingest") await benchIngest(wal);
  if (which === undefined || which === "wait") await benchWaitLsn(wal);
  if (which === undefined || which === "stream") await benchWaitLsnStreaming(wal);
  if (which === undefined || which === "reads") await benchReads(wal);
}

await main();
