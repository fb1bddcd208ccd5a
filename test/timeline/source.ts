/**
 * Real WAL for timeline tests: a PostgreSQL 15 cluster runs a workload and stops
 * cleanly; its segment files, up to the end of valid WAL, are the source a timeline is
 * fed from and compared with.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { CancellationToken, RequestContext, TaskKind } from "../../src/lifecycle/index.js";
import { listWalSegments, WalDecodeError, WalDecoder } from "../../src/wal/index.js";
import { startCluster } from "../support/postgres.js";

export interface WalSource {
  /** The WAL bytes from `start` to `end`. */
  readonly bytes: Buffer;
  /** A segment boundary: where the bytes begin. */
  readonly start: bigint;
  /** The end of the last valid record. */
  readonly end: bigint;
  readonly segmentSize: number;
  /** Segment file names and their full contents, as in pg_wal. */
  readonly segments: { name: string; bytes: Buffer }[];
  /** Every record's LSN and end, and the blocks it touches. */
  readonly records: { lsn: bigint; end: bigint; blocks: string[] }[];
}

/** Runs `workload` on a fresh 1 MiB-segment cluster and returns its WAL. */
export async function makeWalSource(workload: string[], segmentMiB = 1): Promise<WalSource> {
  const pg = await startCluster({
    walSegmentSizeMiB: segmentMiB,
    settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
  });
  try {
    for (const sql of workload) await pg.sql(sql);
  } finally {
    await pg.run("pg_ctl", ["-D", pg.dataDir, "-m", "fast", "-w", "stop"]).catch(() => {});
  }
  try {
    const { files, segmentSize } = listWalSegments([pg.walDir]);
    const segments = files.map((f) => ({
      name: f.name,
      bytes: readFileSync(join(pg.walDir, f.name)),
    }));
    const all = Buffer.concat(segments.map((s) => s.bytes));
    const start = files[0]!.segno * BigInt(segmentSize);
    const dec = new WalDecoder({ startLsn: start, segmentSize });
    dec.push(all);
    dec.end();
    const records: WalSource["records"] = [];
    try {
      for (let r = dec.next(); r !== undefined; r = dec.next()) {
        records.push({
          lsn: r.lsn,
          end: r.end,
          blocks: r.blocks.map((b) => `${b.spc}/${b.db}/${b.rel}/${b.fork}/${b.blk}`),
        });
      }
    } catch (error) {
      if (!(error instanceof WalDecodeError && error.endOfWal)) throw error;
      if (process.env.DEBUG_SOURCE) console.error(error);
    }
    const end = records[records.length - 1]!.end;
    return {
      bytes: all.subarray(0, Number(end - start)),
      start,
      end,
      segmentSize,
      segments,
      records,
    };
  } finally {
    await pg.stop();
  }
}

/** What {@link useWalSource} hands a suite. */
export interface WalSuite {
  /** The WAL of the suite's workload. */
  src: WalSource;
  /** A temp dir for the suite's timelines and files, removed after the suite. */
  dir: string;
}

/**
 * Registers the hooks of a suite fed from one WAL source. `before`: makes the WAL of
 * `workload` and a temp dir `tideline-<name>-…`, and hands both to `setUp`, which keeps them
 * and may prepare more. `after`: runs `tearDown` (to stop what still uses the dir), then
 * removes the dir. Call it in the `describe` body, ahead of hooks that use the source.
 */
export function useWalSource(
  workload: string[],
  name: string,
  setUp: (suite: WalSuite) => void | Promise<void>,
  tearDown?: () => void | Promise<void>,
): void {
  let dir: string | undefined;
  before(async () => {
    const src = await makeWalSource(workload);
    dir = mkdtempSync(join(tmpdir(), `tideline-${name}-`));
    await setUp({ src, dir });
  });
  after(async () => {
    try {
      await tearDown?.();
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** A small seeded PRNG (mulberry32), so failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Splits `[from, to)` of the source into random pieces of 1 byte .. `max` bytes. */
export function* pieces(
  src: WalSource,
  from: bigint,
  to: bigint,
  rnd: () => number,
  max = 200_000,
) {
  let at = from;
  while (at < to) {
    const n = BigInt(Math.max(1, Math.floor(rnd() * rnd() * max)));
    const stop = at + n < to ? at + n : to;
    yield {
      lsn: at,
      bytes: Buffer.from(src.bytes.subarray(Number(at - src.start), Number(stop - src.start))),
    };
    at = stop;
  }
}

/** A fresh root context (with its own token) for a test's calls. */
export function testContext(): RequestContext {
  return RequestContext.root(TaskKind.UnitTest, new CancellationToken());
}
