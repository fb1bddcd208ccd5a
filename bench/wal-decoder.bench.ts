/**
 * WAL decoder throughput on real pgbench WAL, next to `pg_waldump --stats` on the same files.
 *
 * Uses the segments in `$TIDELINE_BENCH_PGWAL` (a stopped cluster's pg_wal) when set; otherwise
 * starts a throwaway PostgreSQL 15 cluster and writes ~300 MB of WAL with pgbench.
 * Decoding runs from memory (files are read first), whole segments and 128 KiB chunks (the size
 * of replication messages), each the best of 3.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  parseSegmentFileName,
  segmentStartLsn,
  WalDecodeError,
  WalDecoder,
} from "../src/wal/index.js";
import { type Cluster, HAVE_PG15, PG15_BIN, startCluster } from "../test/support/postgres.js";

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  let dir = process.env.TIDELINE_BENCH_PGWAL;
  let cluster: Cluster | undefined;
  try {
    if (dir === undefined) {
      if (!HAVE_PG15) {
        console.log("skipped: PostgreSQL 15 is not installed and TIDELINE_BENCH_PGWAL is not set");
        return;
      }
      cluster = await startCluster({
        settings: { wal_keep_size: "4GB", max_wal_size: "4GB", shared_buffers: "128MB" },
      });
      await cluster.pgbench(["-i", "-q", "-s", "10"]);
      await cluster.pgbench(["-c", "2", "-T", "20", "-n"]);
      await cluster.stopServer();
      dir = cluster.walDir;
    }
    const files = readdirSync(dir)
      .filter((f) => /^[0-9A-F]{24}$/.test(f))
      .sort();
    const bufs = files.map((f) => readFileSync(join(dir!, f)));
    const segmentSize = bufs[0]!.length;
    const startLsn = segmentStartLsn(
      parseSegmentFileName(files[0]!, segmentSize)!.segno,
      segmentSize,
    );
    const total = bufs.reduce((a, b) => a + b.length, 0);

    for (const [label, chunk] of [
      ["whole segments", 0],
      ["128 KiB chunks", 128 * 1024],
    ] as const) {
      let best = Number.POSITIVE_INFINITY;
      let records = 0;
      let bytes = 0;
      for (let rep = 0; rep < 3; rep++) {
        const t0 = process.hrtime.bigint();
        const dec = new WalDecoder({ startLsn, segmentSize });
        records = 0;
        bytes = 0;
        try {
          for (const b of bufs) {
            for (let i = 0; i < b.length; i += chunk || b.length) {
              dec.push(chunk ? b.subarray(i, i + chunk) : b);
              for (const r of dec) {
                records++;
                bytes += r.totLen;
              }
            }
          }
        } catch (e) {
          if (!(e instanceof WalDecodeError && e.endOfWal)) throw e;
        }
        best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
      }
      console.log(
        `decoder, ${label}: ${records} records (${(bytes / MiB).toFixed(0)} MiB) from ${(total / MiB).toFixed(0)} MiB of segments in ${best.toFixed(3)} s = ${(total / MiB / best).toFixed(0)} MiB/s, ${(records / best / 1e6).toFixed(2)} M records/s`,
      );
    }

    const waldump = join(PG15_BIN, "pg_waldump");
    const args = ["--stats", "-p", dir, files[0]!, files[files.length - 1]!];
    const asRoot = process.getuid?.() === 0;
    const t0 = process.hrtime.bigint();
    const r = asRoot
      ? spawnSync("runuser", ["-u", "postgres", "--", waldump, ...args], { encoding: "utf8" })
      : spawnSync(waldump, args, { encoding: "utf8" });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const totalLine = r.stdout.split("\n").find((l) => l.startsWith("Total"));
    console.log(
      `pg_waldump --stats (reads the files itself): ${s.toFixed(3)} s; ${totalLine?.replace(/\s+/g, " ") ?? r.stderr}`,
    );
  } finally {
    await cluster?.stop();
  }
}

await main();
