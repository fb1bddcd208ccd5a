#!/usr/bin/env node
// Runs every compiled test file under .build/test with Node's own test runner.
// Files are listed explicitly so the same command works on Node 20, 22 and 24
// (glob arguments to `node --test` only arrived in Node 21).
// Usage: node scripts/run-tests.mjs [substring ...]   (filters test files by path)
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = ".build/test";
const filters = process.argv.slice(2);
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (
      name.endsWith(".test.js") &&
      (filters.length === 0 || filters.some((f) => path.includes(f)))
    ) {
      files.push(path);
    }
  }
})(root);
if (files.length === 0) {
  console.error(`no test files under ${root} match ${JSON.stringify(filters)}`);
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? "2";
const result = spawnSync(
  process.execPath,
  ["--enable-source-maps", "--expose-gc", "--test", `--test-concurrency=${concurrency}`, ...files],
  // Freed WAL memory is overwritten, so a read of it shows as wrong bytes or a CRC error.
  { stdio: "inherit", env: { TIDELINE_POOL_POISON: "1", ...process.env } },
);
process.exit(result.status ?? 1);
