#!/usr/bin/env node
// Builds Tideline's optional native CRC-32C addon (native/crc32c.c -> native/build/crc32c.node)
// with the system C compiler and Node's own Node-API headers. No node-gyp: one C file, one
// command. Optional: when it cannot be built (no compiler, no headers, a read-only package
// directory, an unsupported platform), it says why on one line and exits 0, and Tideline
// computes the same CRCs in JavaScript (slower).
//
// Usage: node scripts/build-native.mjs [--required] [--quiet]
//   --required  exit 1 when the addon cannot be built (CI uses it: the tests must cover it)
//   --quiet     say nothing when the addon is up to date
// Environment: CC (default cc; may carry words, e.g. "ccache cc"), TIDELINE_NODE_HEADERS (the
// directory with node_api.h).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "native", "crc32c.c");
const out = join(root, "native", "build", "crc32c.node");
const required = process.argv.includes("--required");
const quiet = process.argv.includes("--quiet");

function giveUp(why) {
  const msg = `build-native: ${why}; CRC-32C will be computed in JavaScript (slower)`;
  if (required) {
    console.error(`${msg}. --required: failing.`);
    process.exit(1);
  }
  console.error(msg);
  process.exit(0);
}

try {
  build();
} catch (error) {
  giveUp(`could not build ${out} (${error instanceof Error ? error.message : String(error)})`);
}

function build() {
  if (!existsSync(src)) giveUp(`${src} is missing`);
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) {
    if (!quiet) console.error(`build-native: ${out} is up to date`);
    return;
  }
  // Node's headers: beside the node binary (official tarballs, Debian's and NodeSource's
  // packages install them under <prefix>/include/node), or where npm's node-gyp config says.
  const candidates = [
    process.env.TIDELINE_NODE_HEADERS,
    join(dirname(process.execPath), "..", "include", "node"),
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, "include", "node"),
    "/usr/include/node",
    "/usr/local/include/node",
  ].filter(Boolean);
  const headers = candidates.find((d) => existsSync(join(d, "node_api.h")));
  if (headers === undefined) giveUp(`no node_api.h found (looked in ${candidates.join(", ")})`);

  const [cc, ...ccArgs] = (process.env.CC || "cc").trim().split(/\s+/);
  const args = [
    ...ccArgs,
    "-O2",
    "-fPIC",
    "-shared",
    "-Wall",
    "-Wextra",
    "-DNAPI_VERSION=8",
    `-I${headers}`,
    // Node-API symbols are resolved against the node binary when the addon is loaded.
    ...(process.platform === "darwin" ? ["-undefined", "dynamic_lookup"] : []),
  ];
  const tmp = `${out}.${process.pid}.tmp`;
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync(cc, [...args, "-o", tmp, src, "-lpthread"], { encoding: "utf8" });
  if (r.error !== undefined || r.status !== 0) {
    rmSync(tmp, { force: true });
    const detail =
      r.error !== undefined
        ? r.error.message
        : r.stderr.trim().split("\n").slice(-3).join(" | ") || `exit status ${r.status}`;
    giveUp(`${cc} could not build it (${detail})`);
  }
  renameSync(tmp, out);
  if (!quiet) console.error(`build-native: built ${out}`);
}
