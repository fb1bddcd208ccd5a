/**
 * `tideline export`: write a timeline's WAL out as standard segment files.
 *
 * @module
 */
import { mkdir } from "node:fs/promises";
import type { Command } from "commander";
import { CancellationToken, RequestContext, TaskKind } from "../../../lifecycle/index.js";
import { exportSegments, Timeline } from "../../../timeline/index.js";
import { formatLsn, type Lsn } from "../../../wal/index.js";
import { lsnOption } from "./options.js";

interface ExportCliOptions {
  dataDir: string;
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
  if (!Timeline.exists(options.dataDir, options.timeline)) {
    process.stderr.write(
      `tideline export: no timeline "${options.timeline}" in data dir "${options.dataDir}"\n`,
    );
    return 1;
  }
  const timeline = await Timeline.open({
    dataDir: options.dataDir,
    id: options.timeline,
    readOnly: true,
  });
  const token = CancellationToken.fromSignal(signalOnInterrupt());
  const ctx = RequestContext.root(TaskKind.Main, token);
  try {
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
    if (error instanceof RangeError) {
      process.stderr.write(`tideline export: ${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    await timeline.shutdown("hard");
    token[Symbol.dispose]();
  }
}

function signalOnInterrupt(): AbortSignal {
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort("interrupted"));
  return controller.signal;
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
    .requiredOption("--data-dir <dir>", "Tideline's data directory")
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

Example:
  tideline export --data-dir /var/lib/tideline --timeline main --out /backup/wal`,
    )
    .action(async (options: ExportCliOptions) => {
      process.exitCode = await runExport(options);
    });
}
