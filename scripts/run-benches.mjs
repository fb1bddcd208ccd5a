#!/usr/bin/env node
// Runs each compiled benchmark under .build/bench in its own process, one after another,
// so that one benchmark's garbage never lands in another's timing.
// Usage: npm run bench [-- substring ...]
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const root = ".build/bench";
const filters = process.argv.slice(2);
const files = readdirSync(root)
  .filter((n) => n.endsWith(".bench.js"))
  .filter((n) => filters.length === 0 || filters.some((f) => n.includes(f)))
  .sort();
let failed = 0;
for (const file of files) {
  console.log(`\n## ${file.replace(/\.bench\.js$/, "")}\n`);
  const r = spawnSync(process.execPath, ["--expose-gc", "--enable-source-maps", join(root, file)], {
    stdio: "inherit",
  });
  if (r.status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
