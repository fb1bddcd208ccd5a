/**
 * `tideline export`: write a timeline's WAL out as standard segment files, from a data dir
 * or from remote storage alone.
 *
 * @module
 */
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import {
  CancellationToken,
  CancelledError,
  RequestContext,
  TaskKind,
} from "../../../lifecycle/index.js";
import { attachTimeline, openRemoteStorage, type RemoteStorage } from "../../../remote/index.js";
import {
  checkTimelineId,
  exportSegments,
  LayerNotLocalError,
  Timeline,
} from "../../../timeline/index.js";
import { formatLsn, type Lsn } from "../../../wal/index.js";
import { lsnOption } from "./options.js";

interface ExportCliOptions {
  dataDir?: string;
  remote?: string;
  timeline: string;
  out: string;
  from?: Lsn;
  to?: Lsn;
}

/**
 * Runs `tideline export`; returns the exit code.
 *
 * @example
 * ```ts
 * import { runExport } from "./export.js";
 * process.exitCode = await runExport({ dataDir: "/data", timeline: "main", out: "/backup/wal" });
 * ```
 */
export async function runExport(options: ExportCliOptions): Promise<number> {
  const say = (m: string) => process.stderr.write(`tideline export: ${m}\n`);
  if ((options.dataDir === undefined) === (options.remote === undefined)) {
    say(
      options.dataDir === undefined
        ? "give one of --data-dir DIR or --remote URL"
        : "give only one of --data-dir and --remote",
    );
    return 2;
  }
  try {
    checkTimelineId(options.timeline);
  } catch (error) {
    say((error as Error).message);
    return 2;
  }
  const token = new CancellationToken();
  const ctx = RequestContext.root(TaskKind.Main, token);
  let storage: RemoteStorage | undefined;
  let scratch: string | undefined;
  let timeline: Timeline | undefined;
  // SIGINT, SIGTERM or SIGHUP: stop, clean up, exit 130. A second one: remove the scratch
  // dir at once and exit.
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted === undefined) {
      interrupted = signal;
      token.cancel(`interrupted by ${signal}`);
      return;
    }
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
    process.exit(130);
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, onSignal);
  try {
    if (options.dataDir !== undefined) {
      if (!Timeline.exists(options.dataDir, options.timeline)) {
        say(`no timeline "${options.timeline}" in data dir "${options.dataDir}"`);
        return 1;
      }
      timeline = await Timeline.open({
        dataDir: options.dataDir,
        id: options.timeline,
        readOnly: true,
      });
    } else {
      try {
        storage = await openRemoteStorage(options.remote!);
      } catch (error) {
        if (!(error instanceof TypeError || error instanceof RangeError)) throw error;
        say(`--remote: ${error.message}`);
        return 2;
      }
      // Layers are downloaded as the export reads them, next to the output (which needs
      // that room anyway), and removed at the end. Scratch dirs of exports that were killed
      // are removed first.
      await mkdir(options.out, { recursive: true });
      await removeStaleScratch(options.out);
      scratch = await mkdtemp(join(options.out, `${SCRATCH_PREFIX}${process.pid}-`));
      timeline = await attachTimeline({
        dataDir: scratch,
        id: options.timeline,
        storage,
        ctx,
        readOnly: true,
        fsync: false, // a throwaway copy: only the exported files must be durable
        retry: { maxAttempts: 5 },
      });
      if (timeline === undefined) {
        say(`no timeline "${options.timeline}" in ${storage.display}`);
        return 1;
      }
    }
    await mkdir(options.out, { recursive: true });
    const tty = process.stderr.isTTY;
    const result = await exportSegments(
      timeline,
      options.out,
      {
        ...(options.from !== undefined ? { from: options.from } : {}),
        ...(options.to !== undefined ? { to: options.to } : {}),
        onFile: (name, i, n) => {
          if (tty) process.stderr.write(`\r${i}/${n} ${name}`);
        },
      },
      ctx,
    );
    if (tty && result.files.length > 0) process.stderr.write("\n");
    process.stdout.write(
      `exported ${result.files.length} segment file(s) of timeline "${timeline.id}" (${formatLsn(result.from)} .. ${formatLsn(result.to)}) to ${options.out}\n`,
    );
    return 0;
  } catch (error) {
    if (interrupted !== undefined && error instanceof CancelledError) {
      say(`interrupted by ${interrupted}; the segment files already written are whole`);
      return 130;
    }
    if (error instanceof LayerNotLocalError) {
      say(
        `layer ${error.file} is not in the data dir (evicted to remote storage, or not downloaded yet): export from remote storage instead, with --remote URL in place of --data-dir`,
      );
      return 1;
    }
    // A range outside the timeline, storage or disk failing: one line, exit 1.
    say((error as Error).message);
    return 1;
  } finally {
    try {
      await timeline?.shutdown("hard");
    } finally {
      if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
      (storage as { destroy?: () => void } | undefined)?.destroy?.();
      for (const s of signals) process.off(s, onSignal);
      token[Symbol.dispose]();
    }
  }
}

/** Scratch dirs of `--remote` exports: `<out>/.tideline-export-<pid>-XXXXXX`. */
const SCRATCH_PREFIX = ".tideline-export-";

/** Removes scratch dirs in `out` left by exports whose process is gone (killed). */
async function removeStaleScratch(out: string): Promise<void> {
  for (const name of await readdir(out)) {
    const m = /^\.tideline-export-(\d+)-/.exec(name);
    if (m === null || isAlive(Number(m[1]))) continue;
    await rm(join(out, name), { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Registers `tideline export`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { registerExport } from "./export.js";
 * registerExport(new Command("tideline"));
 * ```
 */
export function registerExport(program: Command): void {
  program
    .command("export")
    .description("write a timeline's WAL as standard segment files (as in pg_wal)")
    .option("--data-dir <dir>", "Tideline's data directory")
    .option(
      "--remote <url>",
      "read the timeline from remote storage alone: file:///path or s3://bucket/prefix?endpoint=...",
    )
    .requiredOption("--timeline <id>", "the timeline to export")
    .requiredOption("--out <dir>", "where to write the segment files (created if missing)")
    .option(
      "--from <lsn>",
      "start with the segment holding this LSN (default: the first whole one)",
      lsnOption,
    )
    .option("--to <lsn>", "stop before this LSN (default: all WAL received)", lsnOption)
    .addHelpText(
      "after",
      `
Whole segments are written under their pg_wal names, byte for byte as the source had
them; an incomplete last segment is written as <name>.partial, zero-padded to the
segment size (as pg_receivewal does). Each file is written, fsynced, then renamed into
place. Reading is safe while \`tideline ingest\` runs on the same data directory.

Exactly one of --data-dir and --remote says where the timeline is. With --remote (e.g.
after the machine with the data dir is gone, or for layers a server evicted), the layers
the range needs are downloaded into a temporary directory inside --out and removed at
the end: --out needs room for them as well as for the segments. Remote storage holds the
WAL uploaded so far: "all WAL received" means all WAL uploaded. S3 credentials come
from the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE).

Exit status: 0 exported; 1 no such timeline or range, or a failure (storage, disk);
2 usage error; 130 interrupted (SIGINT, SIGTERM, SIGHUP: the segment files already
written are whole, and the downloaded layers are removed).

Examples:
  tideline export --data-dir /var/lib/tideline --timeline main --out /backup/wal
  tideline export --remote s3://backups/tideline --timeline main --out /restore/wal \\
                  --from 0/3000000 --to 0/9000000`,
    )
    .action(async (options: ExportCliOptions) => {
      process.exitCode = await runExport(options);
    });
}
