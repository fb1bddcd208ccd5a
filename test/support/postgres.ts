/**
 * Throwaway Debian PostgreSQL 15 clusters for tests: initdb into a temp dir, a port of its own on
 * 127.0.0.1, helpers to run SQL, pgbench and pg_waldump, and stop + remove.
 *
 * PostgreSQL refuses to run as root: when the tests run as root, every PostgreSQL program runs
 * as the `postgres` user through `runuser`, and the temp dir is chown'd to it.
 *
 * Every cluster started is stopped by `stop()`; a process `exit` hook stops any that a failing
 * test left behind.
 *
 * @module
 */

import { execFile, spawnSync } from "node:child_process";
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../src/service/local_postgres.js";

/** Where Debian installs PostgreSQL 15's programs. */
export const PG15_BIN = "/usr/lib/postgresql/15/bin";

/** Whether Debian's PostgreSQL 15 is installed (tests skip themselves when it is not). */
export const HAVE_PG15 = existsSync(join(PG15_BIN, "initdb"));

const asRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Options for {@link startCluster}. */
export interface ClusterOptions {
  /** `initdb --wal-segsize`, in MiB (default 16). */
  walSegmentSizeMiB?: number;
  /** Extra `postgresql.conf` settings, e.g. `{ wal_level: "logical", wal_compression: "zstd" }`. */
  settings?: Record<string, string | number | boolean>;
  /** Directory of the PostgreSQL programs (default Debian's 15). */
  binDir?: string;
}

/** The result of running a program. */
export interface RunResult {
  stdout: string;
  stderr: string;
}

const live = new Set<Cluster>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const c of live) c.stopSync();
  });
}

/** A running throwaway cluster. */
export class Cluster {
  readonly dir: string;
  readonly dataDir: string;
  /** The server's port (a new one is picked if the first was taken meanwhile). */
  port: number;
  readonly binDir: string;
  readonly segmentSize: number;
  private running = false;

  constructor(dir: string, port: number, binDir: string, segmentSize: number) {
    this.dir = dir;
    this.dataDir = join(dir, "data");
    this.port = port;
    this.binDir = binDir;
    this.segmentSize = segmentSize;
  }

  /** The pg_wal directory. */
  get walDir(): string {
    return join(this.dataDir, "pg_wal");
  }

  /** Runs a PostgreSQL program (as `postgres` when we are root). */
  run(program: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
    const [cmd, argv] = command(join(this.binDir, program), args);
    return new Promise((resolve, reject) => {
      execFile(
        cmd,
        argv,
        { cwd: this.dir, timeout: timeoutMs, maxBuffer: 512 * 1024 * 1024, env: pgEnv() },
        (err, stdout, stderr) => {
          if (err) {
            reject(new Error(`${program} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
          } else resolve({ stdout, stderr });
        },
      );
    });
  }

  /** Runs SQL through psql (stops at the first error); returns unaligned tuples-only output. */
  async sql(query: string, database = "postgres"): Promise<string> {
    const file = join(this.dir, `q${Math.random().toString(36).slice(2)}.sql`);
    writeFileSync(file, query);
    if (asRoot) chownSync(file, ...postgresIds());
    try {
      const r = await this.run("psql", [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-At",
        "-h",
        this.dir,
        "-p",
        String(this.port),
        "-d",
        database,
        "-f",
        file,
      ]);
      return r.stdout.trim();
    } finally {
      rmSync(file, { force: true });
    }
  }

  /** Runs pgbench against `database`. */
  pgbench(args: string[], database = "postgres"): Promise<RunResult> {
    return this.run("pgbench", ["-h", this.dir, "-p", String(this.port), ...args, database]);
  }

  /** `pg_switch_wal()`; returns the LSN it returned. */
  switchWal(): Promise<string> {
    return this.sql("SELECT pg_switch_wal()");
  }

  /** The WAL segment files now in pg_wal, sorted. */
  segmentFiles(): string[] {
    return readdirSync(this.walDir)
      .filter((f) => /^[0-9A-F]{24}$/.test(f))
      .sort();
  }

  /** Runs pg_waldump with `args` in pg_wal. Does not fail on a non-zero exit (end of WAL). */
  waldump(args: string[]): RunResult & { status: number | null } {
    const [cmd, argv] = command(join(this.binDir, "pg_waldump"), args);
    const r = spawnSync(cmd, argv, {
      cwd: this.walDir,
      encoding: "utf8",
      maxBuffer: 1024 * 1024 * 1024,
      timeout: 120_000,
    });
    return { stdout: r.stdout, stderr: r.stderr, status: r.status };
  }

  /** Marks the cluster as running (after pg_ctl start). */
  markRunning(): void {
    this.running = true;
    live.add(this);
  }

  /** Stops the server (fast, or `mode`) but keeps its files, e.g. to read a final pg_wal. */
  async stopServer(mode: "smart" | "fast" | "immediate" = "fast"): Promise<void> {
    if (!this.running) return;
    await this.run("pg_ctl", ["-D", this.dataDir, "-m", mode, "-w", "stop"], 60_000);
    this.running = false;
  }

  /** Starts a server stopped by {@link stopServer} again, on the same port. */
  async startServer(): Promise<void> {
    if (this.running) return;
    await this.run("pg_ctl", [
      "-D",
      this.dataDir,
      "-l",
      join(this.dir, "server.log"),
      "-w",
      "-t",
      "60",
      "start",
    ]);
    this.markRunning();
  }

  /** `pg_ctl restart` (fast, or `mode`), waiting until the server accepts connections again. */
  async restartServer(mode: "smart" | "fast" | "immediate" = "fast"): Promise<void> {
    await this.run("pg_ctl", [
      "-D",
      this.dataDir,
      "-l",
      join(this.dir, "server.log"),
      "-m",
      mode,
      "-w",
      "-t",
      "60",
      "restart",
    ]);
    this.markRunning();
  }

  /** `pg_ctl promote` of a standby, waiting until it accepts writes. */
  async promote(): Promise<void> {
    await this.run("pg_ctl", ["-D", this.dataDir, "-w", "-t", "60", "promote"]);
  }

  /** The server's log so far (for failure messages). */
  serverLog(): string {
    try {
      return readFileSync(join(this.dir, "server.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** Stops the server (fast) and removes the temp dir. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.running) {
      this.running = false;
      try {
        await this.run("pg_ctl", ["-D", this.dataDir, "-m", "fast", "-w", "stop"], 60_000);
      } catch {
        this.stopSync();
      }
    }
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops the server immediately, synchronously (exit hook). */
  stopSync(): void {
    if (!this.running) return;
    this.running = false;
    const [cmd, argv] = command(join(this.binDir, "pg_ctl"), [
      "-D",
      this.dataDir,
      "-m",
      "immediate",
      "-w",
      "stop",
    ]);
    spawnSync(cmd, argv, { stdio: "ignore", timeout: 30_000 });
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a throwaway cluster. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  installExitHook();
  const binDir = options.binDir ?? PG15_BIN;
  const segMiB = options.walSegmentSizeMiB ?? 16;
  const dir = mkdtempSync(join(tmpdir(), "tideline-pg-"));
  if (asRoot) chownSync(dir, ...postgresIds());
  const port = await freePort();
  const cluster = new Cluster(dir, port, binDir, segMiB * 1024 * 1024);
  try {
    await cluster.run("initdb", [
      "-D",
      cluster.dataDir,
      "-A",
      "trust",
      "-U",
      "postgres",
      "--no-sync",
      `--wal-segsize=${segMiB}`,
    ]);
    const writeConf = () => {
      const settings: Record<string, string | number | boolean> = {
        listen_addresses: "127.0.0.1",
        port: cluster.port,
        unix_socket_directories: dir,
        fsync: false,
        max_wal_senders: 4,
        max_connections: 20,
        shared_buffers: "32MB",
        ...options.settings,
      };
      const conf = Object.entries(settings)
        .map(
          ([k, v]) =>
            `${k} = ${typeof v === "string" ? `'${v.replaceAll("'", "''")}'` : String(v)}`,
        )
        .join("\n");
      const file = join(cluster.dataDir, "postgresql.auto.conf");
      writeFileSync(file, `${conf}\n`);
      if (asRoot) chownSync(file, ...postgresIds());
    };
    // The port was free when picked; another process may take it before the server binds.
    for (let attempt = 1; ; attempt++) {
      writeConf();
      try {
        await cluster.run("pg_ctl", [
          "-D",
          cluster.dataDir,
          "-l",
          join(dir, "server.log"),
          "-w",
          "-t",
          "60",
          "start",
        ]);
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
        cluster.port = await freePort();
      }
    }
    cluster.markRunning();
    return cluster;
  } catch (e) {
    // Whatever state the server is in, try to stop it before removing its files.
    cluster.markRunning();
    await cluster.stop().catch(() => undefined);
    throw e;
  }
}

/** Options for {@link startStandby}. */
export interface StandbyOptions {
  /** Extra `postgresql.conf` settings on top of the primary's (which the backup copies). */
  settings?: Record<string, string | number | boolean>;
}

/**
 * Makes a streaming standby of `primary` (`pg_basebackup -R -X stream` into a temp dir of
 * its own) and starts it on its own port. The primary needs free WAL senders (startCluster
 * allows 4). Stop it with `stop()` like any cluster.
 */
export async function startStandby(
  primary: Cluster,
  options: StandbyOptions = {},
): Promise<Cluster> {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), "tideline-pg-"));
  if (asRoot) chownSync(dir, ...postgresIds());
  const standby = new Cluster(dir, await freePort(), primary.binDir, primary.segmentSize);
  try {
    await standby.run("pg_basebackup", [
      "-h",
      primary.dir,
      "-p",
      String(primary.port),
      "-U",
      "postgres",
      "-D",
      standby.dataDir,
      "-R",
      "-X",
      "stream",
      "-c",
      "fast",
      "--no-sync",
    ]);
    // The backup carries the primary's postgresql.auto.conf (port, socket dir) and -R added
    // primary_conninfo to it: later lines win, so append this server's own settings.
    for (let attempt = 1; ; attempt++) {
      const settings = { port: standby.port, unix_socket_directories: dir, ...options.settings };
      appendFileSync(
        join(standby.dataDir, "postgresql.auto.conf"),
        `${Object.entries(settings)
          .map(
            ([k, v]) =>
              `${k} = ${typeof v === "string" ? `'${v.replaceAll("'", "''")}'` : String(v)}`,
          )
          .join("\n")}\n`,
      );
      try {
        await standby.startServer();
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
        standby.port = await freePort();
      }
    }
    return standby;
  } catch (e) {
    standby.markRunning();
    await standby.stop().catch(() => undefined);
    throw e;
  }
}

function command(program: string, args: string[]): [string, string[]] {
  return asRoot ? ["runuser", ["-u", "postgres", "--", program, ...args]] : [program, args];
}

function pgEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("PG")) delete env[k];
  return env;
}

let ids: [number, number] | undefined;
function postgresIds(): [number, number] {
  if (ids === undefined) {
    const u = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    ids = [Number(u.stdout.trim()), Number(g.stdout.trim())];
  }
  return ids;
}

export { freePort };
