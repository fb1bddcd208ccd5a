#!/usr/bin/env node
/**
 * The `tideline` command line. Each command lives in its own module under
 * `./commands/` and registers itself on the program; this file only wires them.
 *
 * @module
 */
import { Command, CommanderError } from "commander";
import { VERSION } from "../version.js";
import { commands } from "./commands/index.js";

/**
 * Builds the `tideline` program with every command registered.
 *
 * @example
 * ```ts
 * import { buildProgram } from "tideline/cli";
 * await buildProgram().parseAsync(["node", "tideline", "--help"]);
 * ```
 */
export function buildProgram(): Command {
  const program = new Command("tideline")
    .description(
      "Stream PostgreSQL's write-ahead log into durable, queryable timelines.\n" +
        "Run `tideline <command> --help` for the options of one command.",
    )
    .version(VERSION, "-V, --version", "print the version and exit")
    .showHelpAfterError("(run with --help for usage)")
    .configureHelp({ sortSubcommands: true });
  for (const register of commands) register(program);
  program.argument("[command]", "the command to run").action((name?: string) => {
    if (name === undefined) program.help();
    program.error(`tideline: unknown command '${name}'; see \`tideline --help\` for the list`);
  });
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`tideline: ${message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
