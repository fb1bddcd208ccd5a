/**
 * The check most streaming tests end with: `tideline export` of a timeline, then every
 * whole segment it wrote equals the server's own pg_wal file of that name, byte for byte.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const BIN = resolve("dist/cli/main.js");

/**
 * Exports `timeline` of `dataDir` into `out` with the CLI and compares each whole segment
 * with `walDir`'s file; asserts there are at least `minSegments`. Returns their names.
 */
export async function assertExportEqualsPgWal(options: {
  dataDir: string;
  timeline?: string;
  out: string;
  walDir: string;
  minSegments: number;
}): Promise<string[]> {
  const args = [
    BIN,
    "export",
    "--data-dir",
    options.dataDir,
    "--timeline",
    options.timeline ?? "main",
    "--out",
    options.out,
  ];
  try {
    await promisify(execFile)(process.execPath, args, { encoding: "utf8" });
  } catch (error) {
    const e = error as { code?: number; stderr?: string };
    assert.fail(`tideline export failed (${e.code}): ${e.stderr}`);
  }
  const whole = readdirSync(options.out).filter((f) => /^[0-9A-F]{24}$/.test(f));
  assert.ok(
    whole.length >= options.minSegments,
    `${whole.length} whole segments: ${whole.join(", ")}`,
  );
  for (const name of whole) {
    assert.ok(
      readFileSync(join(options.out, name)).equals(readFileSync(join(options.walDir, name))),
      `${name} equals pg_wal/${name}`,
    );
  }
  return whole;
}
