#!/usr/bin/env node
/**
 * Bundles the `tideline` command line (dist/service/cli/main.js, as tsc emitted it) into
 * dist/cli/: one module for the entry and one per command, loaded when that command runs,
 * plus shared chunks; packages in node_modules stay outside. Node.js then opens a handful
 * of files at start-up instead of ~40 (10-17 ms less for each command, which matters for
 * restore-wal: PostgreSQL starts it once per WAL segment during recovery).
 *
 * The waldump worker is an entry of its own, next to the chunk that starts it
 * (`new URL("./waldump_worker.js", import.meta.url)`); the native addon is found from
 * dist/cli as from dist/wal (src/wal/native.ts).
 *
 * Run by `npm run build`, after tsc. Usage: node scripts/bundle-cli.mjs
 */
import { chmodSync, rmSync } from "node:fs";
import { build } from "esbuild";

const outdir = "dist/cli";
// Chunk names carry hashes: remove the last build's.
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: {
    main: "dist/service/cli/main.js",
    waldump_worker: "dist/service/cli/commands/waldump_worker.js",
  },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  logLevel: "warning",
});
chmodSync(`${outdir}/main.js`, 0o755);
