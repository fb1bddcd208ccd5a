#!/usr/bin/env node
/**
 * The `tideline` command line. Each command lives in its own module under
 * `./commands/` and registers itself on the program; this file only wires them.
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { VERSION } from "../version.js";
import { loadCommands, type RegisterCommand } from "./commands/index.js";

/**
 * Builds the `tideline` program with `commands` registered (see `loadCommands`).
 *
 * @example
 * ```ts
 * import { buildProgram } from "tideline/cli";
 * await buildProgram(await loadCommands()).parseAsync(["node", "tideline", "--help"]);
 * ```
 */
export function buildProgram(commands: readonly RegisterCommand[]): Command {
  const program = new Command("tideline")
    .description(
      "Stream PostgreSQL's write-ahead log into durable, queryable timelines.\n" +
        "Run `tideline <command> --help` for the options of one command.",
    )
    .version(VERSION, "-V, --version", "print the version and exit")
    .showHelpAfterError("(run with --help for usage)")
    .configureHelp({ sortSubcommands: true })
    // Set before the commands are added, so they inherit it: errors reach main's catch.
    .exitOverride();
  for (const register of commands) register(program);
  program.argument("[command]", "the command to run").action((name?: string) => {
    if (name === undefined) program.help();
    program.error(`tideline: unknown command '${name}'; see \`tideline --help\` for the list`);
  });
  return program;
}

async function main(argv: string[]): Promise<number> {
  // Load only the command named (the first word that is not an option), or all of them.
  const words = argv.slice(2);
  const name = words.find((a) => !a.startsWith("-"));
  // `tideline --version` needs no command (loading them all took ~0.1 s).
  const versionOnly = name === undefined && words.some((w) => w === "-V" || w === "--version");
  const program = buildProgram(versionOnly ? [] : await loadCommands(name));
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    // Help and --version exit 0; a usage error (bad option or value) exits 2, as is usual,
    // unless the command chose its own status (commander's own is 1): restore-wal's
    // --on-error abort makes it 255.
    if (error instanceof CommanderError)
      return error.exitCode === 0 ? 0 : error.exitCode === 1 ? 2 : error.exitCode;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`tideline: ${message}\n`);
    return 1;
  }
}

// A reader that goes away early (`tideline waldump --help | head -1`) ends nothing but the
// output: commands that print a lot stop by themselves (see BufferedOutput).
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
});
process.exitCode = await main(process.argv);
