import type { Command } from "commander";

/** A command module adds one subcommand (with its own `--help`) to the program. */
export type RegisterCommand = (program: Command) => void;

/**
 * Every command of the `tideline` program, by name, each loaded only when asked for: a
 * command line that names one command loads that one alone (`tideline waldump` does not
 * load the replication client), `--help` loads them all.
 */
export const commandLoaders: Readonly<Record<string, () => Promise<RegisterCommand>>> = {
  demo: async () => (await import("./demo.js")).registerDemo,
  ingest: async () => (await import("./ingest.js")).registerIngest,
  export: async () => (await import("./export.js")).registerExport,
  "restore-wal": async () => (await import("./restore_wal.js")).registerRestoreWal,
  server: async () => (await import("./server.js")).registerServer,
  token: async () => (await import("./token.js")).registerToken,
  waldump: async () => (await import("./waldump.js")).registerWaldump,
};

/**
 * The commands to register for a command line whose command is `name`: that one when it is
 * a known command, every command otherwise (help, errors, `--version`).
 *
 * @example
 * ```ts
 * const commands = await loadCommands("waldump"); // [registerWaldump]
 * ```
 */
export async function loadCommands(name?: string): Promise<RegisterCommand[]> {
  const one = name === undefined ? undefined : commandLoaders[name];
  if (one !== undefined && Object.hasOwn(commandLoaders, name!)) return [await one()];
  return Promise.all(Object.values(commandLoaders).map((load) => load()));
}
