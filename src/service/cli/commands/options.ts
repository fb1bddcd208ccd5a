/**
 * Parsers for option values shared by commands: each rejects a bad value with a
 * message that names it and says what was expected.
 *
 * @module
 */
import { InvalidArgumentError } from "commander";
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
