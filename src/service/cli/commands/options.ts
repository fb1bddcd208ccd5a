/**
 * Parsers for option values shared by commands: each rejects a bad value with a
 * message that names it and says what was expected.
 *
 * @module
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { type Lsn, parseLsn } from "../../../wal/lsn.js";

/**
 * Parses an LSN option (`16/B374D848`).
 *
 * @example
 * ```ts
 * import { lsnOption } from "./options.js";
 * lsnOption("0/16B3D88"); // 23805320n
 * ```
 */
export function lsnOption(value: string): Lsn {
  try {
    return parseLsn(value);
  } catch {
    throw new InvalidArgumentError(
      `"${value}" is not an LSN; expected two hex numbers like 16/B374D848`,
    );
  }
}

/**
 * Parses a PostgreSQL timeline number (1 .. 2^32-1).
 *
 * @example
 * ```ts
 * import { timelineOption } from "./options.js";
 * timelineOption("2"); // 2
 * ```
 */
export function timelineOption(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > 0xffff_ffff) {
    throw new InvalidArgumentError(
      `"${value}" is not a timeline; expected an integer from 1 to 4294967295`,
    );
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  k: 1 << 10,
  kib: 1 << 10,
  m: 1 << 20,
  mib: 1 << 20,
  g: 1 << 30,
  gib: 1 << 30,
};

/**
 * Parses a size in bytes: a whole number, optionally with a binary unit (`512KiB`,
 * `16MiB`, `1GiB`; `k`, `m`, `g` also accepted, case-insensitive).
 *
 * @example
 * ```ts
 * import { sizeOption } from "./options.js";
 * sizeOption("16MiB"); // 16777216
 * ```
 */
export function sizeOption(value: string): number {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m === null ? undefined : SIZE_UNITS[m[2]!.toLowerCase()];
  const n = m === null || unit === undefined ? Number.NaN : Number(m[1]) * unit;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError(
      `"${value}" is not a size; expected a positive number of bytes like 16MiB, 512KiB or 1048576`,
    );
  }
  return n;
}

/**
 * Adds the options of how a timeline stores its layers, shared by `ingest` and `server`:
 * `--remote`, `--layer-size`, `--compression`, `--no-sync`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { addLayerStorageOptions } from "./options.js";
 * addLayerStorageOptions(new Command("ingest"));
 * ```
 */
export function addLayerStorageOptions(command: Command): Command {
  return command
    .option(
      "--remote <url>",
      "upload layer files to file:///path or s3://bucket/prefix?endpoint=...",
    )
    .option(
      "--layer-size <size>",
      "cut layer files at about this size, e.g. 16MiB (the default) or 512KiB",
      sizeOption,
    )
    .addOption(
      new Option("--compression <kind>", "compress layer files (zstd needs Node.js 22.15+)")
        .choices(["none", "lz4", "zstd"])
        .default("none"),
    )
    .option(
      "--no-sync",
      "do not fsync layer files (testing only: a machine crash may lose WAL reported as flushed)",
    );
}
