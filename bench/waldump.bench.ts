/**
 * `tideline waldump --stats` against `pg_waldump --stats` on the same ≥ 600 MB of real pgbench
 * WAL, both timed here, in one run, as whole processes (wall time, median of 9, interleaved;
 * `tideline` with its default threads, with one thread per CPU (`--jobs N`), and without the
 * native CRC-32C addon (`TIDELINE_NATIVE=0`);
 * CPU time from /usr/bin/time when it is there).
 *
 * The WAL is made once by a throwaway PostgreSQL 15 cluster (`pgbench -i -s 30`, then
 * `pgbench -c 2 -j 2 -T 30` until the cluster has written at least 640 MiB, then a clean stop)
 * and cached in `/tmp/tideline-bench-waldump-wal`; `$TIDELINE_BENCH_WALDUMP_WAL` names another
 * directory of segments to use instead. Files are read once before timing so that both tools
 * find them in the page cache.
 *
 * Run: `npm run bench -- waldump` (needs `npm run build` first for dist/).
 */
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { defaultStatsThreads } from "../src/service/cli/commands/waldump.js";
import { nativeCrc } from "../src/wal/native.js";
import { type Cluster, HAVE_PG15, PG15_BIN, startCluster } from "../test/support/postgres.js";

const MiB = 1024 * 1024;
const CACHE = "/tmp/tideline-bench-waldump-wal";
const WANT_BYTES = 640 * MiB;
const RUNS = 9;
const CLI = "dist/cli/main.js";

function segments(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /^[0-9A-F]{24}$/.test(f))
    .sort();
}

/** Writes the benchmark's WAL with a throwaway cluster (a few minutes), into CACHE. */
async function generate(): Promise<void> {
  const t0 = Date.now();
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster({
      settings: {
        wal_keep_size: "8GB",
        max_wal_size: "8GB",
        checkpoint_timeout: "1h",
        shared_buffers: "128MB",
      },
    });
    const lsn = async () =>
      BigInt(await cluster!.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"));
    const start = await lsn();
    await cluster.pgbench(["-i", "-q", "-s", "30"], "postgres");
    for (let round = 0; round < 20 && (await lsn()) - start < BigInt(WANT_BYTES); round++) {
      await cluster.pgbench(["-c", "2", "-j", "2", "-T", "30", "-n"]);
    }
    await cluster.stopServer();
    const tmp = `${CACHE}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    for (const f of segments(cluster.walDir)) copyFileSync(join(cluster.walDir, f), join(tmp, f));
    writeFileSync(join(tmp, "MADE"), `${new Date().toISOString()} in ${Date.now() - t0} ms\n`);
    rmSync(CACHE, { recursive: true, force: true });
    renameSync(tmp, CACHE);
  } finally {
    await cluster?.stop();
  }
  console.log(`made the WAL in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

const TIME = "/usr/bin/time";
const HAVE_TIME = existsSync(TIME);

/** Runs a process; its wall time (measured here) and, when /usr/bin/time exists, its CPU time. */
function timed(
  cmd: string,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): { s: number; cpu: number | undefined; stdout: string; stderr: string } {
  const [c, a] = HAVE_TIME ? [TIME, ["-f", "@cpu %U %S", cmd, ...args]] : [cmd, args];
  // A variable set to undefined in `env` is left out.
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) {
    if (v !== undefined) merged[k] = v;
  }
  const t0 = process.hrtime.bigint();
  const r = spawnSync(c, a, {
    encoding: "utf8",
    maxBuffer: 64 * MiB,
    env: merged,
  });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw r.error;
  let stderr = r.stderr;
  let cpu: number | undefined;
  const m = /@cpu (\S+) (\S+)\n?$/.exec(stderr);
  if (m) {
    cpu = Number(m[1]) + Number(m[2]);
    stderr = stderr.slice(0, m.index);
  }
  return { s, cpu, stdout: r.stdout, stderr };
}

function totalLine(out: string): string {
  return (out.split("\n").find((l) => l.startsWith("Total")) ?? "(no Total line)").replace(
    /\s+/g,
    " ",
  );
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) {
    console.log(`skipped: ${CLI} is missing (npm run build first)`);
    return;
  }
  let dir = process.env.TIDELINE_BENCH_WALDUMP_WAL;
  if (dir === undefined) {
    dir = CACHE;
    if (!existsSync(join(CACHE, "MADE"))) {
      if (!HAVE_PG15) {
        console.log("skipped: PostgreSQL 15 is not installed and no WAL is cached");
        return;
      }
      await generate();
    }
  }
  const files = segments(dir);
  let bytes = 0;
  for (const f of files) bytes += readFileSync(join(dir, f)).length; // into the page cache
  const waldump = join(PG15_BIN, "pg_waldump");
  const theirsArgs = ["--stats", "-p", dir, files[0]!, files[files.length - 1]!];
  const oursArgs = [CLI, "waldump", "--stats", dir];

  console.log(
    `WAL: ${files.length} segments, ${(bytes / MiB).toFixed(0)} MiB (${(bytes / 1e6).toFixed(0)} MB) in ${dir}`,
  );
  console.log(
    `machine: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}`,
  );
  console.log(`pg_waldump: ${waldump} ${theirsArgs.join(" ")}`);
  console.log(`tideline:   ${process.execPath} ${oursArgs.join(" ")}`);

  // Same numbers first: the two Total lines must agree.
  const a = timed(waldump, theirsArgs);
  const b = timed(process.execPath, oursArgs);
  if (totalLine(a.stdout) !== totalLine(b.stdout) || a.stdout !== b.stdout) {
    console.log(
      `MISMATCH:\n pg_waldump: ${totalLine(a.stdout)}\n tideline:   ${totalLine(b.stdout)}`,
    );
    process.exitCode = 1;
    return;
  }
  console.log(`both: ${totalLine(a.stdout)}`);

  const cpuCount = availableParallelism();
  const threads = defaultStatsThreads(cpuCount, nativeCrc() !== undefined);
  // The other thread count worth showing: one per CPU, or one when that is the default's.
  const otherJobs = threads === cpuCount ? 1 : cpuCount;
  const oneArgs = [CLI, "waldump", "--stats", "--jobs", String(otherJobs), dir];
  const theirs: number[] = [];
  const ours: number[] = [];
  const one: number[] = [];
  const js: number[] = [];
  const cpu: Record<string, number[]> = {
    theirs: [],
    ours: [],
    one: [],
    js: [],
    noCa: [],
    bare: [],
    bareNoCa: [],
  };
  const jsEnv = { TIDELINE_NATIVE: "0" };
  // NODE_EXTRA_CA_CERTS makes Node.js read and parse that CA bundle at every start, before any
  // of the program runs (~30 ms for Debian's bundle on a 2-CPU VM). Some sandboxes set it for
  // every process; a fresh machine does not. When it is set, Tideline is also timed without
  // it, and so is Node.js's bare start-up both ways, so the table shows what it costs.
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  const noCaEnv = { NODE_EXTRA_CA_CERTS: undefined };
  const noCa: number[] = [];
  const bare: number[] = [];
  const bareNoCa: number[] = [];
  const bareArgs = ["-e", "0"];
  const jsRun = timed(process.execPath, oursArgs, jsEnv);
  if (jsRun.stdout !== b.stdout) {
    console.log("MISMATCH: the JavaScript CRC run printed other numbers");
    process.exitCode = 1;
    return;
  }
  for (let i = 0; i < RUNS; i++) {
    const runs: [
      string,
      number[],
      string,
      readonly string[],
      Record<string, string | undefined>,
    ][] = [
      ["theirs", theirs, waldump, theirsArgs, {}],
      ["ours", ours, process.execPath, oursArgs, {}],
      ["one", one, process.execPath, oneArgs, {}],
      ["js", js, process.execPath, oursArgs, jsEnv],
    ];
    if (extraCa !== undefined) {
      runs.push(
        ["noCa", noCa, process.execPath, oursArgs, noCaEnv],
        ["bare", bare, process.execPath, bareArgs, {}],
        ["bareNoCa", bareNoCa, process.execPath, bareArgs, noCaEnv],
      );
    }
    for (const [key, list, cmd, args, env] of runs) {
      const r = timed(cmd, args, env);
      list.push(r.s);
      if (r.cpu !== undefined) cpu[key]!.push(r.cpu);
    }
  }
  const row = (name: string, xs: number[], cpus: number[], reads = true) => {
    const m = median(xs);
    const c = cpus.length > 0 ? `${median(cpus).toFixed(2)} s` : "?";
    const rate = reads ? `${(bytes / 1e6 / m).toFixed(0)} MB/s` : "-";
    console.log(
      `| ${name} | **${m.toFixed(3)} s** | ${rate} | ${c} | ${xs.map((x) => x.toFixed(3)).join(", ")} |`,
    );
  };
  console.log(
    `\nload average before timing: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(", ")}`,
  );
  console.log(
    "\n| command | median wall time | MB/s | CPU (user+sys) | runs (wall) |\n| --- | --- | --- | --- | --- |",
  );
  row("`pg_waldump --stats`", theirs, cpu.theirs!);
  const plural = (n: number) => `${n} thread${n === 1 ? "" : "s"}`;
  row(`\`tideline waldump --stats\` (default: ${plural(threads)})`, ours, cpu.ours!);
  row(`\`tideline waldump --stats --jobs ${otherJobs}\``, one, cpu.one!);
  row(
    `\`TIDELINE_NATIVE=0 tideline waldump --stats\` (JavaScript CRC-32C, ${plural(defaultStatsThreads(cpuCount, false))})`,
    js,
    cpu.js!,
  );
  if (extraCa !== undefined) {
    row(`\`tideline waldump --stats\` (default), without NODE_EXTRA_CA_CERTS`, noCa, cpu.noCa!);
    row(
      `\`node -e 0\` (Node.js start-up alone), NODE_EXTRA_CA_CERTS=${extraCa}`,
      bare,
      cpu.bare!,
      false,
    );
    row("`node -e 0`, without NODE_EXTRA_CA_CERTS", bareNoCa, cpu.bareNoCa!, false);
  }
  console.log(
    `\nratio tideline / pg_waldump (wall): ${(median(ours) / median(theirs)).toFixed(2)}`,
  );
  if (extraCa !== undefined) {
    console.log(
      `ratio without NODE_EXTRA_CA_CERTS (set here to ${extraCa}): ${(median(noCa) / median(theirs)).toFixed(2)}`,
    );
  }
}

await main();
