/**
 * `tideline restore-wal`: PostgreSQL's `restore_command`, served from a timeline in a
 * local data dir, in remote storage, or on a running `tideline server`.
 *
 * @module
 */
import { rmSync } from "node:fs";
import { mkdtemp, open, readFile, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Command, CommanderError, InvalidArgumentError, Option } from "commander";
import {
  CancellationToken,
  CancelledError,
  RequestContext,
  TaskKind,
} from "../../../lifecycle/index.js";
import { attachTimeline, openRemoteStorage } from "../../../remote/index.js";
import { checkTimelineId, restoreWalFile, Timeline } from "../../../timeline/index.js";
import {
  isPartialSegmentFileName,
  isSegmentFileName,
  isValidSegmentSize,
  parseHistoryFileName,
} from "../../../wal/index.js";

/**
 * What `tideline restore-wal` does on a failure other than "the timeline does not hold the
 * file": `missing` exits 2, which PostgreSQL takes like "not found"; `abort` exits 255, which
 * makes PostgreSQL stop recovery with FATAL. See {@linkcode FAILURE_EXIT}.
 */
export type OnError = "missing" | "abort";

/** The values of `--on-error`, the default first. */
const ON_ERROR: readonly OnError[] = ["missing", "abort"];

/**
 * The exit status of a failure other than "not held" (bad usage, storage or server
 * unreachable, damaged data, a crash), by `--on-error`.
 *
 * PostgreSQL's startup process takes every status from 1 to 125 as "not found", and a status
 * above 125 or death by a signal other than SIGTERM as a hard failure (FATAL): see
 * `RestoreArchivedFile` in xlogarchive.c and `wait_result_is_any_signal` in wait_error.c.
 * - `missing`: 2, the status it always had (PostgreSQL sees "not found": in archive recovery
 *   that is the end of the archive, so an outage ends recovery early; a standby goes on
 *   streaming and asks again later).
 * - `abort`: 255. Not 126 or 127, which PostgreSQL logs as "command not executable" and
 *   "command not found"; not 128+N, which is how a shell reports death by signal N (and 143,
 *   SIGTERM, PostgreSQL takes as a shutdown request, without FATAL). 255 is the usual "failed,
 *   no more specific status", and what ssh exits with when it cannot reach the host, so a
 *   `restore_command` run through ssh stops the same way when the connection fails.
 */
export const FAILURE_EXIT: Readonly<Record<OnError, number>> = { missing: 2, abort: 255 };

/** The options of {@linkcode runRestoreWal}: `--timeline`, the source, and `--on-error`. */
export interface RestoreWalOptions {
  /** The timeline holding the WAL. */
  timeline: string;
  /** Read from this Tideline data directory. */
  dataDir?: string;
  /** Read from remote storage alone (`file:///...` or `s3://...`). */
  remote?: string;
  /** Fetch from a running `tideline server` (http:// or https://). */
  server?: string;
  /** With `server`: read the bearer token from this file (else `$TIDELINE_TOKEN`). */
  tokenFile?: string;
  /** The exit status of failures other than "not held": `missing` (2, the default) or `abort` (255). */
  onError?: OnError;
  /**
   * Give up after this many seconds (a failure, exit 2 or 255), so that an unresponsive
   * server or storage never holds PostgreSQL's recovery forever. 0: no limit. Default
   * {@linkcode DEFAULT_TIMEOUT_SECONDS}.
   */
  timeout?: number;
}

/** `--timeout`'s default, in seconds: ample for one 16 MiB segment and its retries. */
export const DEFAULT_TIMEOUT_SECONDS = 300;

/** The largest `--timeout` (a timer's limit, 2^31-1 ms: about 24.8 days); 0 means none. */
const MAX_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** Whether `n` is a valid `--timeout`: a number of seconds from 0 to MAX_TIMEOUT_SECONDS. */
function isTimeoutSeconds(n: unknown): n is number {
  return typeof n === "number" && Number.isFinite(n) && n >= 0 && n <= MAX_TIMEOUT_SECONDS;
}

/** Exit codes: the file was written; the source does not hold it (see FAILURE_EXIT for the rest). */
const WRITTEN = 0;
const NOT_FOUND = 1;

/** A usage or configuration problem: exit 2 (255 with `--on-error abort`) with the message. */
class UsageError extends Error {}

/**
 * The timeline asked for does not exist where the options say: a configuration error (a
 * wrong --timeline or source), not the end of the archive, so a failure (exit 2, or 255 with
 * `--on-error abort`, which stops a point-in-time recovery instead of letting it end early).
 */
class NoSuchTimelineError extends Error {}

/** The exit status of a failure with `onError` (any value not a known one counts as the default). */
function failureExit(onError: unknown): number {
  return onError === "abort" ? FAILURE_EXIT.abort : FAILURE_EXIT.missing;
}

/** Where the file comes from. */
type Source =
  | { kind: "data-dir"; dataDir: string }
  | { kind: "remote"; url: string }
  | { kind: "server"; url: URL; bearer: string | undefined };

async function sourceOf(options: RestoreWalOptions): Promise<Source> {
  const given = [
    options.dataDir !== undefined ? "--data-dir" : undefined,
    options.remote !== undefined ? "--remote" : undefined,
    options.server !== undefined ? "--server" : undefined,
  ].filter((g) => g !== undefined);
  if (given.length !== 1) {
    throw new UsageError(
      given.length === 0
        ? "give one of --data-dir DIR, --remote URL or --server URL"
        : `give only one of --data-dir, --remote and --server (got ${given.join(" and ")})`,
    );
  }
  if (options.tokenFile !== undefined && options.server === undefined)
    throw new UsageError("--token-file goes with --server");
  if (options.dataDir !== undefined) return { kind: "data-dir", dataDir: options.dataDir };
  if (options.remote !== undefined) return { kind: "remote", url: options.remote };
  let url: URL;
  try {
    url = new URL(options.server!);
  } catch {
    throw new UsageError(`--server "${options.server}" is not a URL (e.g. http://127.0.0.1:9898)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new UsageError(`--server "${url.origin}" must be an http:// or https:// URL`);
  let bearer: string | undefined;
  if (options.tokenFile !== undefined) {
    try {
      bearer = (await readFile(options.tokenFile, "utf8")).trim();
    } catch (error) {
      throw new UsageError(`cannot read --token-file: ${(error as Error).message}`);
    }
    if (bearer === "") throw new UsageError(`--token-file "${options.tokenFile}" is empty`);
  } else {
    const env = process.env.TIDELINE_TOKEN?.trim();
    bearer = env === undefined || env === "" ? undefined : env;
  }
  return { kind: "server", url, bearer };
}

/** Checks `%f`: a segment (maybe `.partial`) or a `.history` file name. */
function checkWalFileName(name: string): void {
  if (
    !isSegmentFileName(name) &&
    !isPartialSegmentFileName(name) &&
    parseHistoryFileName(name) === undefined
  ) {
    throw new UsageError(
      `"${name}" is not a WAL segment or history file name (e.g. 000000010000000000000003 or 00000002.history)`,
    );
  }
}

/**
 * Runs `tideline restore-wal`; returns the exit code: 0 when the file was written
 * (byte-exact, through a temporary file, fsynced, renamed), 1 when the source does not
 * hold it (nothing written: PostgreSQL then tries elsewhere or ends recovery), and for bad
 * usage or any other failure (nothing written) 2, or 255 with `onError: "abort"` (see
 * {@linkcode FAILURE_EXIT}). SIGINT/SIGTERM stop it at once, leaving nothing behind.
 * Exactly one of `dataDir`, `remote` and `server` must be given.
 *
 * @example
 * ```ts
 * import { runRestoreWal } from "./restore_wal.js";
 * process.exitCode = await runRestoreWal("000000010000000000000003", "/pg/pg_wal/RECOVERYXLOG", { dataDir: "/data", timeline: "main", onError: "abort" });
 * ```
 */
export async function runRestoreWal(
  walFile: string,
  dest: string,
  options: RestoreWalOptions,
): Promise<number> {
  const say = (message: string) => process.stderr.write(`tideline restore-wal: ${message}\n`);
  const failed = failureExit(options.onError);
  const token = new CancellationToken();
  let signalled: NodeJS.Signals | undefined;
  let timedOut = false;
  // What a fetch that never stops (a hung mount, say) would leave; removed by the backstop.
  const leftovers = [`${dest}.tmp`];
  let backstop: ReturnType<typeof setTimeout> | undefined;
  // After a cancel, the fetch gets as long again as --timeout (at most BACKSTOP_MS) to stop;
  // then the process cleans up and ends anyway.
  const grace = Math.min(BACKSTOP_MS, Math.max(100, (options.timeout ?? 0) * 1000 || BACKSTOP_MS));
  const armBackstop = (why: string, end: () => void) => {
    backstop ??= setTimeout(() => {
      say(`${why}, and the fetch did not stop within ${grace / 1000} s more: giving up`);
      for (const path of leftovers) rmSync(path, { recursive: true, force: true });
      end();
    }, grace);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    signalled ??= signal;
    token.cancel(signal);
    armBackstop(`stopped by ${signal}`, () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.kill(process.pid, signal);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    if (options.onError !== undefined && !ON_ERROR.includes(options.onError)) {
      throw new UsageError(`--on-error "${options.onError}" is not one of ${ON_ERROR.join(", ")}`);
    }
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_SECONDS;
    if (!isTimeoutSeconds(timeout)) {
      throw new UsageError(
        `--timeout must be a number of seconds from 0 to ${MAX_TIMEOUT_SECONDS}, got ${timeout}`,
      );
    }
    checkTimelineId(options.timeline);
    checkWalFileName(walFile);
    const source = await sourceOf(options);
    const fetchFile = (t: CancellationToken) => {
      const request: Request = {
        id: options.timeline,
        walFile,
        dest,
        ctx: RequestContext.root(TaskKind.Main, t),
        say,
        leftovers,
      };
      return source.kind === "data-dir"
        ? fromDataDir(source.dataDir, request)
        : source.kind === "remote"
          ? fromRemote(source.url, request)
          : fromServer(source.url, source.bearer, request);
    };
    // On timeout the fetch is cancelled like on a signal, and its own cleanup (temporary
    // files and dirs) runs before the answer.
    const limited = token.child();
    const timer =
      timeout === 0
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            limited.cancel("--timeout");
            armBackstop(`not restored within --timeout ${timeout} s`, () => process.exit(failed));
          }, timeout * 1000);
    try {
      const found = await fetchFile(limited);
      if (!found) return NOT_FOUND;
      return WRITTEN;
    } finally {
      clearTimeout(timer);
      limited[Symbol.dispose]();
    }
  } catch (error) {
    if (timedOut && signalled === undefined && error instanceof CancelledError) {
      say(
        `cannot restore ${walFile}: not restored within --timeout ${options.timeout ?? DEFAULT_TIMEOUT_SECONDS} s (nothing written)`,
      );
      return failed;
    }
    if (error instanceof CancelledError && signalled !== undefined) {
      // Stopped (PostgreSQL shutting down): end the way it expects, by the signal.
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.kill(process.pid, signalled);
      return failed;
    }
    say(
      error instanceof UsageError ||
        error instanceof NoSuchTimelineError ||
        error instanceof TypeError ||
        error instanceof RangeError
        ? (error as Error).message
        : `cannot restore ${walFile}: ${(error as Error).message}`,
    );
    return failed;
  } finally {
    clearTimeout(backstop);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** The longest a cancelled fetch (timeout or signal) may take to stop before the process ends anyway. */
const BACKSTOP_MS = 10_000;

/** What every source is asked for, and how it reports a miss. */
interface Request {
  /** The timeline. */
  id: string;
  /** The file PostgreSQL asks for (`%f`). */
  walFile: string;
  /** Where to write it (`%p`). */
  dest: string;
  ctx: RequestContext;
  say: (message: string) => void;
  /** Paths to remove if the process must end before the fetch stops (see BACKSTOP_MS). */
  leftovers: string[];
}

async function fromDataDir(dataDir: string, req: Request): Promise<boolean> {
  if (!Timeline.exists(dataDir, req.id)) {
    throw new NoSuchTimelineError(`no timeline "${req.id}" in data dir "${dataDir}"`);
  }
  return restoreAndShutdown(await Timeline.open({ dataDir, id: req.id, readOnly: true }), req);
}

/**
 * From remote storage alone: the timeline is opened read-only in a temporary dir, the
 * layers the file needs are downloaded there, and the dir is removed afterwards.
 */
async function fromRemote(url: string, req: Request): Promise<boolean> {
  // PostgreSQL runs restore-wal once per segment and logs its stderr: the AWS SDK's
  // multi-line notice about Node.js versions would fill its log. Said once by `tideline
  // ingest` and `server` instead; an explicit setting of the variable is left alone.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const storage = await openRemoteStorage(url);
  const dataDir = await mkdtemp(join(tmpdir(), "tideline-restore-wal-"));
  req.leftovers.push(dataDir);
  try {
    const timeline = await attachTimeline({
      dataDir,
      id: req.id,
      storage,
      ctx: req.ctx,
      readOnly: true,
      fsync: false, // a throwaway copy: only `dest` must be durable
      retry: { maxAttempts: 5 },
    });
    if (timeline === undefined) {
      throw new NoSuchTimelineError(`no timeline "${req.id}" in ${storage.display}`);
    }
    return await restoreAndShutdown(timeline, req);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Writes the file from an opened timeline, then shuts the timeline down. */
async function restoreAndShutdown(timeline: Timeline, req: Request): Promise<boolean> {
  try {
    const found = await restoreWalFile(timeline, req.walFile, req.dest, req.ctx);
    if (!found) req.say(`timeline "${timeline.id}" does not hold ${req.walFile}`);
    return found;
  } finally {
    await timeline.shutdown("hard");
  }
}

/**
 * From a running `tideline server`: `GET {url}/v1/timelines/{id}/wal_files/{walFile}`,
 * 200 with the bytes, or 404 with `{"error":{"code":"not_found",...}}` when the timeline
 * does not hold the file. Any other answer is an error (exit 2, or 255 with `--on-error
 * abort`), never "not held" (1): a server that is down or misconfigured is not the end of
 * the archive.
 */
async function fromServer(
  base: URL,
  bearer: string | undefined,
  { id, walFile, dest, ctx, say }: Request,
): Promise<boolean> {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/timelines/${encodeURIComponent(id)}/wal_files/${encodeURIComponent(walFile)}`;
  url.search = "";
  url.hash = "";
  const shown = `${url.origin}${url.pathname}`;
  const headers: Record<string, string> = { accept: "application/octet-stream" };
  if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
  let response: Response;
  try {
    response = await fetch(url, { headers, redirect: "error", signal: ctx.token.signal });
  } catch (error) {
    ctx.throwIfCancelled();
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    throw new Error(`GET ${shown} failed: ${cause ?? (error as Error).message}`);
  }
  if (response.status === 200) {
    await writeBody(response, walFile, dest, ctx, shown);
    return true;
  }
  const text = await ctx.token.race(response.text()).catch((error: unknown) => {
    ctx.throwIfCancelled();
    return `(${(error as Error).message})`;
  });
  let code: unknown;
  let message: unknown;
  let what: unknown;
  try {
    const body = JSON.parse(text) as {
      error?: { code?: unknown; message?: unknown; what?: unknown };
    };
    code = body.error?.code;
    message = body.error?.message;
    what = body.error?.what;
  } catch {
    // Not JSON: reported as is below.
  }
  if (response.status === 404 && code === "not_found" && what === "timeline") {
    throw new NoSuchTimelineError(
      `no timeline "${id}" on ${url.origin}${typeof message === "string" ? `: ${message}` : ""}`,
    );
  }
  // "Not held" only when the server says so of the file (or says nothing more: older servers);
  // a wrong URL (no such route) is a failure like any other.
  if (
    response.status === 404 &&
    code === "not_found" &&
    (what === "wal_file" || what === undefined)
  ) {
    say(
      `timeline "${id}" on ${url.origin} does not hold ${walFile}${typeof message === "string" ? `: ${message}` : ""}`,
    );
    return false;
  }
  const detail = typeof message === "string" ? message : text.slice(0, 200).trim();
  const hint =
    response.status === 401 || response.status === 403
      ? " (set TIDELINE_TOKEN or --token-file to the server's token)"
      : "";
  throw new Error(`GET ${shown} answered ${response.status}${hint}: ${detail || "(no body)"}`);
}

/** Streams a 200 response to `dest` through `<dest>.tmp`: whole and fsynced, or nothing. */
async function writeBody(
  response: Response,
  walFile: string,
  dest: string,
  ctx: RequestContext,
  shown: string,
): Promise<void> {
  const expected = response.headers.get("content-length");
  const tmp = `${dest}.tmp`;
  try {
    const file = await open(tmp, "w");
    let written = 0;
    try {
      if (response.body !== null) {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          ctx.throwIfCancelled();
          await file.write(chunk, 0, chunk.length, written);
          written += chunk.length;
        }
      }
      ctx.throwIfCancelled();
      if (expected !== null && Number(expected) !== written)
        throw new Error(`GET ${shown}: got ${written} of ${expected} bytes`);
      // A segment is always a whole segment: anything else is not what PostgreSQL asked for.
      if (parseHistoryFileName(walFile) === undefined && !isValidSegmentSize(written))
        throw new Error(`GET ${shown}: ${written} bytes is not a WAL segment size`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, dest);
  } catch (error) {
    await rm(tmp, { force: true });
    ctx.throwIfCancelled();
    if (error instanceof Error && error.message.startsWith("GET ")) throw error;
    throw new Error(`GET ${shown}: the download broke off: ${(error as Error).message}`);
  }
}

/**
 * Registers `tideline restore-wal`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { registerRestoreWal } from "./restore_wal.js";
 * registerRestoreWal(new Command("tideline"));
 * ```
 */
export function registerRestoreWal(program: Command): void {
  const command = program
    .command("restore-wal")
    .description("write one WAL file from a timeline, for PostgreSQL's restore_command (%f %p)")
    .argument("<walfile>", "the file PostgreSQL asks for (%f): a segment or a .history file")
    .argument("<dest>", "where to write it (%p)")
    .requiredOption("--timeline <id>", "the timeline holding the WAL")
    .option("--data-dir <dir>", "read it from this Tideline data directory")
    .option(
      "--remote <url>",
      "read it from remote storage alone: file:///path or s3://bucket/prefix?endpoint=...",
    )
    .option("--server <url>", "fetch it from a running `tideline server`, e.g. http://host:9898")
    .option(
      "--token-file <file>",
      "with --server: the bearer token, read from this file (else $TIDELINE_TOKEN)",
    )
    .addOption(
      new Option(
        "--on-error <action>",
        'on a failure other than "not held": missing exits 2, which PostgreSQL takes as not found; abort exits 255, which stops its recovery with FATAL',
      )
        .choices(ON_ERROR)
        .default("missing"),
    )
    .option(
      "--timeout <seconds>",
      `give up (a failure, as above) when the file is not restored within this many seconds; 0: no limit (default ${DEFAULT_TIMEOUT_SECONDS})`,
      parseSeconds,
    );
  command
    // Usage errors exit like every failure other than "not held" (1): 2, or 255 with
    // --on-error abort. After the first unknown option commander leaves the rest unparsed,
    // so an --on-error there is looked for among those words.
    .exitOverride((error) => {
      if (error.exitCode === 0) throw error;
      // The raw words first: commander stops at a bad option value, before a later
      // --on-error is parsed.
      const raw = process.argv.slice(process.argv.indexOf("restore-wal") + 1);
      const onError =
        lastOnError(raw) ??
        lastOnError(command.args) ??
        command.opts<RestoreWalOptions>().onError ??
        "missing";
      throw new CommanderError(failureExit(onError), error.code, error.message);
    })
    .addHelpText(
      "after",
      `
Exactly one of --data-dir, --remote and --server says where the timeline is:
  --data-dir  a local data dir (read only: safe beside a running \`tideline ingest\`);
  --remote    remote storage alone, e.g. after the machine with the data dir is gone: the
              layers the file needs are downloaded to a temporary dir, removed afterwards;
  --server    a running \`tideline server\`: GET <url>/v1/timelines/<id>/wal_files/<walfile>,
              sending "Authorization: Bearer <token>" when TIDELINE_TOKEN or --token-file
              gives one.

Exit status (nothing is written unless it is 0):
  0    written, byte for byte as in the source's pg_wal (to <dest>.tmp, fsynced, renamed);
  1    the timeline does not hold the file (a segment not complete yet, or one of another
       PostgreSQL timeline), as restore_command requires;
  2    any other failure: no such timeline, bad usage, storage or server unreachable,
       damaged data, no answer within --timeout (300 s by default);
  255  instead of 2 with --on-error abort.

PostgreSQL takes every status from 1 to 125 as "not found". In archive recovery that is the
end of the archive: recovery ends there and the server is promoted, even when the cause was
an outage. A standby goes on streaming and asks again later. A status above 125 makes its
startup process stop with FATAL and the server shut down; once the cause is fixed, starting
it again resumes recovery. Hence:
  --on-error missing  (the default) suits a standby, which a passing outage only delays;
  --on-error abort    suits point-in-time recovery, which an outage would otherwise end early
                      without a word (PostgreSQL 13+ fails by itself when a recovery target
                      is set and not reached, but not when recovering to the end of the WAL).
Why 255: PostgreSQL logs 126 and 127 as "command not executable" and "command not found",
and 128+N is how a shell reports death by signal N.

In postgresql.conf of the server being recovered:
  restore_command = 'tideline restore-wal --data-dir /var/lib/tideline --timeline main %f %p'
  restore_command = 'tideline restore-wal --remote s3://backups/tideline --timeline main %f %p'
  restore_command = 'tideline restore-wal --server http://tideline:9898 --timeline main %f %p'
  restore_command = 'tideline restore-wal --on-error abort --remote s3://backups/tideline --timeline main %f %p'`,
    )
    .action(async (walFile: string, dest: string, options: RestoreWalOptions) => {
      // Whatever ends this process other than the answer below (an exception escaping a
      // callback, a promise that never settles, a crash reported as 1) is a failure, never
      // "not held".
      let answer: number | undefined;
      process.on("exit", (code) => {
        if (answer === undefined || code !== answer)
          process.exitCode = failureExit(options.onError);
      });
      answer = await runRestoreWal(walFile, dest, options);
      process.exitCode = answer;
    });
}

/** `--timeout`'s value: a number of seconds >= 0. */
function parseSeconds(text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !isTimeoutSeconds(n)) {
    throw new InvalidArgumentError(
      `expected a number of seconds from 0 to ${MAX_TIMEOUT_SECONDS}, got "${text}"`,
    );
  }
  return n;
}

/** The last `--on-error` value among `words` (`--on-error abort` or `--on-error=abort`), if any. */
function lastOnError(words: readonly string[]): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (word === "--") break;
    if (word === "--on-error") value = words[++i];
    else if (word.startsWith("--on-error=")) value = word.slice("--on-error=".length);
  }
  return value;
}
