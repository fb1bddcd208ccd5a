/**
 * Real WAL for the benchmarks: pgbench WAL of a PostgreSQL 15 cluster, from
 * `$TIDELINE_BENCH_PGWAL` (a stopped cluster's pg_wal) or a cache under /tmp
 * (`tideline-bench-timeline-wal`), made once (pgbench -i -s 10, then -c 2 -T 20).
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  parseSegmentFileName,
  segmentStartLsn,
  WalDecodeError,
  WalDecoder,
} from "../src/wal/index.js";
import { HAVE_PG15, startCluster } from "../test/support/postgres.js";

const CACHE = join(tmpdir(), "tideline-bench-timeline-wal");

/** pgbench WAL: its bytes up to the last valid record, and every record. */
export interface Wal {
  bytes: Buffer;
  start: bigint;
  segmentSize: number;
  records: { lsn: bigint; end: bigint }[];
}

/** pg_wal segment files: from `$TIDELINE_BENCH_PGWAL`, the cache, or a fresh pgbench run. */
export async function walDir(): Promise<string | undefined> {
  const given = process.env.TIDELINE_BENCH_PGWAL;
  if (given !== undefined) return given;
  if (existsSync(join(CACHE, "complete"))) return CACHE;
  if (!HAVE_PG15) return undefined;
  console.log(`making WAL with pgbench (cached in ${CACHE})...`);
  const cluster = await startCluster({
    settings: { wal_keep_size: "4GB", max_wal_size: "4GB", shared_buffers: "128MB" },
  });
  try {
    await cluster.pgbench(["-i", "-q", "-s", "10"]);
    await cluster.pgbench(["-c", "2", "-T", "20", "-n"]);
    await cluster.stopServer();
    rmSync(CACHE, { recursive: true, force: true });
    mkdirSync(CACHE, { recursive: true });
    for (const f of cluster.segmentFiles()) copyFileSync(join(cluster.walDir, f), join(CACHE, f));
    writeFileSync(join(CACHE, "complete"), "");
  } finally {
    await cluster.stop();
  }
  return CACHE;
}

/** The segments' bytes up to the end of the last valid record, and every record. */
export function loadWal(dir: string): Wal {
  const files = readdirSync(dir)
    .filter((f) => /^[0-9A-F]{24}$/.test(f))
    .sort();
  const bufs = files.map((f) => readFileSync(join(dir, f)));
  const segmentSize = bufs[0]!.length;
  const start = segmentStartLsn(parseSegmentFileName(files[0]!, segmentSize)!.segno, segmentSize);
  const all = Buffer.concat(bufs);
  const dec = new WalDecoder({ startLsn: start, segmentSize });
  dec.push(all);
  dec.end();
  const records: Wal["records"] = [];
  try {
    for (let r = dec.next(); r !== undefined; r = dec.next())
      records.push({ lsn: r.lsn, end: r.end });
  } catch (e) {
    if (!(e instanceof WalDecodeError && e.endOfWal)) throw e;
  }
  const end = records[records.length - 1]!.end;
  return { bytes: all.subarray(0, Number(end - start)), start, segmentSize, records };
}
