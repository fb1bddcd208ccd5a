/**
 * Point-in-time recovery for tests: a base backup without WAL (`pg_basebackup -X none`) of a
 * throwaway cluster, and a new server that recovers a copy of it through a `restore_command`
 * (`tideline restore-wal ...`) to a recovery target, is promoted and answers a query.
 *
 * {@link recoverBackupExpectingFatal} does the same for a recovery that must fail: the server
 * stops by itself with FATAL, never promoted.
 *
 * `restore_command` runs as the server's user (`postgres` when the tests run as root), so it
 * must be able to run this checkout's `dist/`: {@link PITR_SKIP} says when it cannot.
 *
 * @module
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type CreateTimelineOptions, Timeline } from "../../src/timeline/index.js";
import { parseLsn, segmentStart } from "../../src/wal/index.js";
import { WalReceiver } from "../../src/walreceiver/index.js";
import { type Cluster, freePort, HAVE_PG15, startCluster } from "./postgres.js";

/** This checkout's `tideline` CLI (built by `npm run build`). */
export const TIDELINE_BIN = resolve("dist/cli/main.js");

const asRoot = process.getuid?.() === 0;

/** Whether the server's user can run this checkout's `tideline` (restore_command runs as it). */
function serverCanRunTideline(): boolean {
  const args = [process.execPath, TIDELINE_BIN, "--version"];
  const r = asRoot
    ? spawnSync("runuser", ["-u", "postgres", "--", ...args])
    : spawnSync(args[0]!, args.slice(1));
  return r.status === 0;
}

/** Why PITR through `tideline restore-wal` cannot be tested here, or false when it can. */
export const PITR_SKIP: string | false = !HAVE_PG15
  ? "PostgreSQL 15 is not installed"
  : !serverCanRunTideline()
    ? "the postgres user cannot run this checkout's dist/ (restore_command runs as that user)"
    : false;

/** A primary for archiving tests: 1 MiB segments (small WAL files), WAL kept around. */
export function startArchivedCluster(): Promise<Cluster> {
  return startCluster({
    walSegmentSizeMiB: 1,
    settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
  });
}

/**
 * Starts archiving `cluster`: a new timeline `main` in `dataDir` from the start of the
 * current segment, streamed by a WAL receiver. `options` go to `Timeline.create` (a layer
 * size, a layer fetcher); `beforeStreaming` runs before the receiver starts (to start an
 * uploader, say).
 */
export async function startArchiving(
  cluster: Cluster,
  dataDir: string,
  options: Partial<CreateTimelineOptions> = {},
  beforeStreaming?: (timeline: Timeline) => void,
): Promise<Timeline> {
  const xlogpos = parseLsn(await cluster.sql("SELECT pg_current_wal_lsn()"));
  const timeline = await Timeline.create({
    dataDir,
    id: "main",
    startLsn: segmentStart(xlogpos, 1 << 20),
    segmentSize: 1 << 20,
    ...options,
  });
  beforeStreaming?.(timeline);
  WalReceiver.start(timeline, {
    sources: [`postgres://postgres@127.0.0.1:${cluster.port}/postgres`],
  });
  return timeline;
}

/** Takes a base backup of `cluster` without WAL into `<cluster.dir>/backup`; returns that dir. */
export async function takeBaseBackup(cluster: Cluster): Promise<string> {
  const dir = join(cluster.dir, "backup");
  await cluster.run("pg_basebackup", [
    "-h",
    cluster.dir,
    "-p",
    String(cluster.port),
    "-D",
    dir,
    "-X",
    "none",
    "-c",
    "fast",
  ]);
  return dir;
}

/** Options for {@link recoverBackup}. */
export interface RecoverOptions {
  /** The cluster the backup came from: its programs and temp dir serve the restored server. */
  cluster: Cluster;
  /** The base backup; it is copied, never changed, so it can be recovered again. */
  backupDir: string;
  /** The `restore_command` (without quotes), e.g. `node main.js restore-wal ... %f %p`. */
  restoreCommand: string;
  /** Recovery target settings, e.g. `["recovery_target_name = 'before_the_mistake'"]`. */
  target: string[];
  /** Names the restored data dir and its log in the cluster's temp dir: one per recovery. */
  name: string;
  /** What to ask the promoted server (one value, returned as `state`). */
  stateSql: string;
}

/** What {@link recoverBackup} found: the answer to `stateSql` and the end of the server log. */
export interface Recovered {
  state: string;
  log: string;
}

/** A copy of a base backup set up to recover (not started yet). */
interface Restore {
  /** Its data dir. */
  dir: string;
  port: number;
  /** The server log. */
  logFile: string;
}

/**
 * Copies the backup to `restored-<name>` in the cluster's temp dir, with `restoreCommand`,
 * `target`, `recovery_target_action = 'promote'`, a port of its own and `recovery.signal`.
 */
async function prepareRestore(options: Omit<RecoverOptions, "stateSql">): Promise<Restore> {
  const { cluster, name } = options;
  const dir = join(cluster.dir, `restored-${name}`);
  const cp = spawnSync("cp", ["-a", options.backupDir, dir]);
  assert.equal(cp.status, 0, String(cp.stderr));
  const owner = asRoot
    ? (["-u", "-g"].map((f) =>
        Number(spawnSync("id", [f, "postgres"], { encoding: "utf8" }).stdout.trim()),
      ) as [number, number])
    : undefined;
  const write = (file: string, text: string, append = false) => {
    const path = join(dir, file);
    writeFileSync(path, append ? readFileSync(path, "utf8") + text : text);
    if (owner) chownSync(path, ...owner);
  };
  const port = await freePort();
  write(
    "postgresql.auto.conf",
    [
      "",
      `port = ${port}`,
      `restore_command = '${options.restoreCommand}'`,
      ...options.target,
      "recovery_target_action = 'promote'",
      "",
    ].join("\n"),
    true,
  );
  write("recovery.signal", "");
  return { dir, port, logFile: join(cluster.dir, `restored-${name}.log`) };
}

/**
 * Stops a restored server: a failed start leaves nothing to stop; a failed fast stop falls
 * back to immediate.
 */
async function stopRestored(cluster: Cluster, dir: string, mode: "fast" | "immediate") {
  const stop = (m: "fast" | "immediate") =>
    cluster.run("pg_ctl", ["-D", dir, "-m", m, "-w", "stop"]);
  await stop(mode)
    .catch(() => stop("immediate"))
    .catch(() => {});
}

/**
 * Restores a copy of a base backup with `restoreCommand` and `target` (and
 * `recovery_target_action = 'promote'`), waits for promotion (asserting it happens), runs
 * `stateSql`, stops the server and returns the answer with the end of the server log.
 */
export async function recoverBackup(options: RecoverOptions): Promise<Recovered> {
  const { cluster } = options;
  const { dir, port, logFile } = await prepareRestore(options);
  let stopMode: "fast" | "immediate" = "immediate";
  try {
    await cluster.run("pg_ctl", ["-D", dir, "-l", logFile, "-w", "-t", "120", "start"]);
    const query = (sql: string) =>
      cluster
        .run("psql", [
          "-X",
          "-At",
          "-h",
          cluster.dir,
          "-p",
          String(port),
          "-d",
          "postgres",
          "-c",
          sql,
        ])
        .then((r) => r.stdout.trim());
    // Recovery from remote storage fetches every segment over the network: allow it time.
    const deadline = Date.now() + 120_000;
    let inRecovery = "t";
    while (inRecovery !== "f" && Date.now() < deadline) {
      inRecovery = await query("SELECT pg_is_in_recovery()").catch(() => "t");
      if (inRecovery !== "f") await sleep(100);
    }
    const log = readFileSync(logFile, "utf8").slice(-4000);
    assert.equal(inRecovery, "f", `recovery ended and the server was promoted\n${log}`);
    const state = await query(options.stateSql);
    stopMode = "fast";
    return { state, log };
  } finally {
    await stopRestored(cluster, dir, stopMode);
  }
}

/**
 * Restores a copy of a base backup like {@link recoverBackup}, for a recovery that must fail:
 * waits (up to 60 s) for the server to stop by itself, asserts that it did and was never
 * promoted, and returns the end of its log (the FATAL among it).
 */
export async function recoverBackupExpectingFatal(
  options: Omit<RecoverOptions, "stateSql">,
): Promise<{ log: string }> {
  const { cluster } = options;
  const { dir, logFile } = await prepareRestore(options);
  const running = () => existsSync(join(dir, "postmaster.pid"));
  try {
    // pg_ctl fails when the server stops before it accepts connections, and succeeds when it
    // got as far as read-only ones (hot standby) first: either way, wait for it to stop.
    await cluster
      .run("pg_ctl", ["-D", dir, "-l", logFile, "-w", "-t", "60", "start"])
      .catch(() => {});
    const deadline = Date.now() + 60_000;
    while (running() && Date.now() < deadline) await sleep(100);
    const log = readFileSync(logFile, "utf8").slice(-6000);
    assert.equal(running(), false, `the server stopped by itself\n${log}`);
    assert.doesNotMatch(log, /database system is ready to accept connections/, "never promoted");
    return { log };
  } finally {
    if (running()) await stopRestored(cluster, dir, "immediate");
  }
}
