import type { Command } from "commander";
import { registerDemo } from "./demo.js";
import { registerExport } from "./export.js";
import { registerIngest } from "./ingest.js";
import { registerWaldump } from "./waldump.js";

/** A command module adds one subcommand (with its own `--help`) to the program. */
export type RegisterCommand = (program: Command) => void;

/** Every command of the `tideline` program, in the order they are registered. */
export const commands: readonly RegisterCommand[] = [
  registerDemo,
  registerIngest,
  registerExport,
  registerWaldump,
];
