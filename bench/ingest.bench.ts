/**
 * Streaming a WAL backlog to durable storage: `tideline ingest --end-lsn` next to
 * `pg_receivewal -E`, in one run, from the same PostgreSQL 15 server.
 *
 * A throwaway cluster gets two physical slots (RESERVE_WAL) first, then a pgbench
 * workload writes the backlog (>= 600 MB of WAL by default; TIDELINE_BENCH_INGEST_SCALE
 * sets pgbench's scale). Each tool streams the whole backlog through its own slot, from the
 * slot's restart point to the same end LSN, with its default durability (pg_receivewal
 * fsyncs each finished segment; Tideline fsyncs every layer file and its index), and
 * again both without fsync (`--no-sync`). The page cache is synced once before the rounds,
 * and each run's output is deleted right after it, so writeback of one run's (or the
 * server's) dirty pages does not land in another run's fsyncs. Each
 * measurement is the tool's whole process, wall time; the order is shuffled every round
 * (seeded) and the median is reported. Tideline also decodes and indexes
 * every record. When NODE_EXTRA_CA_CERTS is set, Tideline also runs without it (rows
 * "..., without NODE_EXTRA_CA_CERTS"): Node.js parses that bundle at every start.
 *
 * With TIDELINE_BENCH_INGEST_BASELINE=/path/to/another/dist/cli/main.js, that build
 * of Tideline runs in every round too (rows "... (baseline)"): a before/after in one run.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseLsn } from "../src/wal/index.js";
import { HAVE_PG15, PG15_BIN, startCluster } from "../test/support/postgres.js";

const ROUNDS = Number(process.env.TIDELINE_BENCH_ROUNDS ?? 3);
const SCALE = Number(process.env.TIDELINE_BENCH_INGEST_SCALE ?? 45);
const BASELINE = process.env.TIDELINE_BENCH_INGEST_BASELINE;

/** NODE_EXTRA_CA_CERTS, when this machine sets it (see the runs without it below). */
const EXTRA_CA = process.env.NODE_EXTRA_CA_CERTS;

function time(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, {
      stdio: ["ignore", "ignore", "pipe"],
      ...(env !== undefined ? { env } : {}),
    });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => {
      if (code === 0) resolve((performance.now() - t0) / 1000);
      else reject(new Error(`${cmd} exited ${code}: ${err.slice(-2000)}`));
    });
  });
}

/**
 * Times one run, then removes what it wrote and syncs (untimed): dirty pages of a deleted
 * file are dropped, not written back, so no run's writeback lands in a later run's fsyncs;
 * and the sync makes the filesystem commit the deletion now (on a filesystem mounted with
 * `discard`, such as this machine's, that commit also discards the freed blocks, which took
 * hundreds of milliseconds of the next run's fsyncs when left to it).
 */
async function timeThenRemove(
  out: string,
  cmd: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Promise<number> {
  try {
    return await time(cmd, args, env);
  } finally {
    rmSync(out, { recursive: true, force: true });
    spawnSync("sync");
  }
}

/** A copy of `items` in a pseudo-random order drawn from `seed` (mulberry32, Fisher-Yates). */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  if (!HAVE_PG15) {
    console.log("PostgreSQL 15 is not installed: skipped");
    return;
  }
  const pg = await startCluster({
    settings: {
      wal_keep_size: "4GB",
      max_wal_size: "4GB",
      max_wal_senders: 6,
      max_replication_slots: Math.max(20, ROUNDS * 8 + 4),
    },
  });
  try {
    const perRound = 4 + (BASELINE === undefined ? 0 : 2) + (EXTRA_CA === undefined ? 0 : 2);
    const slots = Array.from({ length: ROUNDS * perRound }, (_, i) => `bench_${i}`);
    await pg.sql(
      slots.map((s) => `SELECT pg_create_physical_replication_slot('${s}', true);`).join("\n"),
    );
    const start = parseLsn(
      await pg.sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'bench_0'"),
    );
    const t0 = performance.now();
    await pg.pgbench(["-i", "-s", String(SCALE), "-q"]);
    await pg.pgbench(["-n", "-c", "2", "-T", "10"]);
    const endText = await pg.sql("SELECT pg_current_wal_lsn()");
    const end = parseLsn(endText);
    const bytes = Number(end - start);
    console.log(
      `backlog: ${(bytes / 1e6).toFixed(0)} MB of WAL, made in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
    // The server (fsync off) leaves its writes dirty in the page cache; the first tool to
    // fsync would pay for writing them back (a 12 s outlier in earlier runs). Start clean.
    spawnSync("sync");
    const url = `postgres://postgres@127.0.0.1:${pg.port}/postgres`;
    const results: Record<string, number[]> = {
      "pg_receivewal -E": [],
      "tideline ingest --end-lsn": [],
      ...(EXTRA_CA !== undefined
        ? { "tideline ingest --end-lsn, without NODE_EXTRA_CA_CERTS": [] }
        : {}),
      ...(BASELINE !== undefined ? { "tideline ingest --end-lsn (baseline)": [] } : {}),
      "pg_receivewal -E --no-sync": [],
      "tideline ingest --end-lsn --no-sync": [],
      ...(EXTRA_CA !== undefined
        ? { "tideline ingest --end-lsn --no-sync, without NODE_EXTRA_CA_CERTS": [] }
        : {}),
      ...(BASELINE !== undefined ? { "tideline ingest --end-lsn --no-sync (baseline)": [] } : {}),
    };
    // Node.js reads and parses the NODE_EXTRA_CA_CERTS bundle at every start (~30 ms here),
    // before any of Tideline runs; a fresh machine does not set it.
    const noExtraCa = { ...process.env };
    delete noExtraCa.NODE_EXTRA_CA_CERTS;
    for (let round = 0; round < ROUNDS; round++) {
      const dir = mkdtempSync(join(tmpdir(), "tideline-bench-ingest-"));
      const receivewal = (slot: string, extra: string[], label: string) => async () => {
        const out = join(dir, `receivewal-${slot}`);
        mkdirSync(out);
        results[label]!.push(
          await timeThenRemove(out, join(PG15_BIN, "pg_receivewal"), [
            "-d",
            `host=127.0.0.1 port=${pg.port} user=postgres`,
            "-D",
            out,
            "-S",
            slot,
            "-E",
            endText,
            "-n",
            ...extra,
          ]),
        );
      };
      const tideline =
        (
          slot: string,
          extra: string[],
          label: string,
          main = "dist/cli/main.js",
          env?: NodeJS.ProcessEnv,
        ) =>
        async () => {
          const out = join(dir, `tideline-${slot}`);
          results[label]!.push(
            await timeThenRemove(
              out,
              process.execPath,
              [
                main,
                "ingest",
                "--source",
                url,
                "--slot",
                slot,
                "--data-dir",
                out,
                "--end-lsn",
                endText,
                ...extra,
              ],
              env,
            ),
          );
        };
      const slot = (k: number) => slots[round * perRound + k]!;
      const runs = [
        receivewal(slot(0), [], "pg_receivewal -E"),
        tideline(slot(1), [], "tideline ingest --end-lsn"),
        receivewal(slot(2), ["--no-sync"], "pg_receivewal -E --no-sync"),
        tideline(slot(3), ["--no-sync"], "tideline ingest --end-lsn --no-sync"),
      ];
      let next = 4;
      if (BASELINE !== undefined) {
        runs.push(
          tideline(slot(next++), [], "tideline ingest --end-lsn (baseline)", BASELINE),
          tideline(
            slot(next++),
            ["--no-sync"],
            "tideline ingest --end-lsn --no-sync (baseline)",
            BASELINE,
          ),
        );
      }
      if (EXTRA_CA !== undefined) {
        runs.push(
          tideline(
            slot(next++),
            [],
            "tideline ingest --end-lsn, without NODE_EXTRA_CA_CERTS",
            undefined,
            noExtraCa,
          ),
          tideline(
            slot(next++),
            ["--no-sync"],
            "tideline ingest --end-lsn --no-sync, without NODE_EXTRA_CA_CERTS",
            undefined,
            noExtraCa,
          ),
        );
      }
      // A new order every round (seeded, so reruns repeat it): a run is slowed by what the one
      // before it left behind, and with a fixed cyclic order the same run always follows the
      // same one.
      for (const run of shuffled(runs, round + 1)) await run();
      rmSync(dir, { recursive: true, force: true });
    }
    console.log(`\n${ROUNDS} rounds, median wall time of the whole process:\n`);
    console.log("| tool | median | MB/s | runs |");
    console.log("| --- | --- | --- | --- |");
    for (const [name, times] of Object.entries(results)) {
      const m = median(times);
      console.log(
        `| ${name} | ${m.toFixed(2)} s | ${(bytes / 1e6 / m).toFixed(0)} | ${times.map((t) => t.toFixed(2)).join(", ")} |`,
      );
    }
  } finally {
    await pg.stop();
  }
}

await main();
