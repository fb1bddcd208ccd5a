/**
 * `tideline waldump --stats` on several threads: the segment files are cut into contiguous
 * ranges (`splitRanges` in `waldump_scan.ts`); the main thread and `threads - 1` workers take ranges in
 * order from a shared counter, and the results are added up in range order with
 * {@link combineRanges}, which gives the sequential run's numbers, end and error, or says that
 * only a sequential run can tell (then the caller runs one).
 *
 * Lifecycle: every worker started is awaited; when anything fails, the others are told to
 * stop, terminated and awaited before the error propagates.
 *
 * @module
 */
import { Worker } from "node:worker_threads";
import {
  type CombinedStats,
  combineRanges,
  type RangeResult,
  type StatsJob,
  scanStatsRange,
} from "./waldump_scan.js";

/** What a worker is started with. */
export interface WorkerInput {
  readonly job: StatsJob;
  /** `[next range to take, first range that stopped the run (ranges.length: none yet)]`. */
  readonly control: Int32Array;
}

const NEXT = 0;
const STOP_AT = 1;

/**
 * Takes ranges from `control` until none is left or an earlier range stopped the run, and
 * decodes each. Used by the main thread and by every worker.
 *
 * @example
 * ```ts
 * const control = new Int32Array(new SharedArrayBuffer(8));
 * control[1] = job.ranges.length;
 * const results = await claimRanges(job, control);
 * ```
 */
export async function claimRanges(job: StatsJob, control: Int32Array): Promise<RangeResult[]> {
  const results: RangeResult[] = [];
  const free: Buffer[] = [];
  for (;;) {
    const r = Atomics.add(control, NEXT, 1);
    if (r >= job.ranges.length || r > Atomics.load(control, STOP_AT)) return results;
    const result = await scanStatsRange(job, r, () => Atomics.load(control, STOP_AT) < r, free);
    results.push(result);
    if (result.stop !== "sentinel") lowerStop(control, r);
  }
}

function lowerStop(control: Int32Array, r: number): void {
  for (;;) {
    const cur = Atomics.load(control, STOP_AT);
    if (cur <= r || Atomics.compareExchange(control, STOP_AT, cur, r) === cur) return;
  }
}

/**
 * Runs `job` on the main thread and `threads - 1` workers. Resolves with the combined
 * counts, or `undefined` when the ranges do not join up and a sequential run must decide.
 *
 * @example
 * ```ts
 * const stats = await runParallelStats(job, 2);
 * ```
 */
export async function runParallelStats(
  job: StatsJob,
  threads: number,
): Promise<CombinedStats | undefined> {
  const control = new Int32Array(new SharedArrayBuffer(8));
  control[STOP_AT] = job.ranges.length;
  const input: WorkerInput = { job, control };
  const workers: Worker[] = [];
  const reports: Promise<RangeResult[]>[] = [];
  let settled = false;
  try {
    for (let i = 1; i < threads; i++) {
      const worker = new Worker(new URL("./waldump_worker.js", import.meta.url), {
        workerData: input,
      });
      workers.push(worker);
      const r = report(worker);
      // Handled at once: the main thread's own ranges await file reads meanwhile, and a worker
      // that fails then must not count as an unhandled rejection (it is awaited below).
      r.catch(() => {});
      reports.push(r);
    }
    const mine = await claimRanges(job, control);
    const theirs = await Promise.all(reports);
    settled = true;
    const all: (RangeResult | undefined)[] = [];
    for (const r of [...mine, ...theirs.flat()]) all[r.range] = r;
    // Ranges after the one that stopped the run may never have been taken.
    const stopAt = Atomics.load(control, STOP_AT);
    return combineRanges(all.slice(0, Math.min(stopAt + 1, job.ranges.length)));
  } finally {
    if (!settled) {
      // Handle every report before the first await: a terminated worker's report rejects.
      const reported = Promise.allSettled(reports);
      Atomics.store(control, STOP_AT, -1);
      await Promise.allSettled(workers.map((w) => w.terminate()));
      await reported;
    }
  }
}

/** A worker's one message, once it has exited; rejects when it fails or exits without one. */
function report(worker: Worker): Promise<RangeResult[]> {
  return new Promise((resolve, reject) => {
    let results: RangeResult[] | undefined;
    worker.once("message", (m: RangeResult[]) => {
      results = m;
    });
    worker.once("error", reject);
    worker.once("exit", (code) => {
      if (results !== undefined) resolve(results);
      else reject(new Error(`a waldump worker thread exited (code ${code}) without a result`));
    });
  });
}
