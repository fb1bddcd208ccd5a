/**
 * `tideline restore-wal`: PostgreSQL's `restore_command`, served from a timeline.
 *
 * @module
 */
import type { Command } from "commander";
import { CancellationToken, RequestContext, TaskKind } from "../../../lifecycle/index.js";
import { restoreWalFile, Timeline } from "../../../timeline/index.js";

interface RestoreWalOptions {
  dataDir: string;
  timeline: string;
}

/**
 * Runs `tideline restore-wal`; returns the exit code: 0 when the file was written, 1
 * when the timeline does not hold it (PostgreSQL then tries elsewhere or ends recovery),
 * 2 for bad usage.
 *
 * @example
 * ```ts
 * import { runRestoreWal } from "./restore_wal.js";
 * process.exitCode = await runRestoreWal("000000010000000000000003", "/pg/pg_wal/RECOVERYXLOG", { dataDir: "/data", timeline: "main" });
 * ```
 */
export async function runRestoreWal(
  walFile: string,
  dest: string,
  options: RestoreWalOptions,
): Promise<number> {
  if (!Timeline.exists(options.dataDir, options.timeline)) {
    process.stderr.write(
      `tideline restore-wal: no timeline "${options.timeline}" in data dir "${options.dataDir}"\n`,
    );
    return 1;
  }
  const timeline = await Timeline.open({
    dataDir: options.dataDir,
    id: options.timeline,
    readOnly: true,
  });
  try {
    const ctx = RequestContext.root(TaskKind.Main, new CancellationToken());
    const found = await restoreWalFile(timeline, walFile, dest, ctx);
    if (!found) {
      process.stderr.write(
        `tideline restore-wal: timeline "${options.timeline}" does not hold ${walFile}\n`,
      );
      return 1;
    }
    return 0;
  } catch (error) {
    if (error instanceof RangeError) {
      process.stderr.write(`tideline restore-wal: ${error.message}\n`);
      return 2;
    }
    throw error;
  } finally {
    await timeline.shutdown("hard");
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
  program
    .command("restore-wal")
    .description("write one WAL file from a timeline, for PostgreSQL's restore_command (%f %p)")
    .argument("<walfile>", "the file PostgreSQL asks for (%f): a segment or a .history file")
    .argument("<dest>", "where to write it (%p)")
    .requiredOption("--data-dir <dir>", "Tideline's data directory")
    .requiredOption("--timeline <id>", "the timeline holding the WAL")
    .addHelpText(
      "after",
      `
Writes the file byte for byte as it was in the source's pg_wal and exits 0; exits 1,
writing nothing, when the timeline does not hold it (a segment not complete yet, or one
of another PostgreSQL timeline), as restore_command requires. Reads only: safe beside a
running \`tideline ingest\`.

In postgresql.conf of the server being recovered:
  restore_command = 'tideline restore-wal --data-dir /var/lib/tideline --timeline main %f %p'`,
    )
    .action(async (walFile: string, dest: string, options: RestoreWalOptions) => {
      process.exitCode = await runRestoreWal(walFile, dest, options);
    });
}
