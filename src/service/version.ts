import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The nearest package.json named `tideline` above this file (dist/ or a test build). */
function readVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const path = join(dir, "package.json");
    if (existsSync(path)) {
      const pkg = JSON.parse(readFileSync(path, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "tideline" && typeof pkg.version === "string") return pkg.version;
    }
    if (dirname(dir) === dir) return "0.0.0-unknown";
  }
}

/**
 * The version of the installed `tideline` package, read from its package.json.
 *
 * @example
 * ```ts
 * import { VERSION } from "tideline";
 * console.log(VERSION); // "0.1.0"
 * ```
 */
export const VERSION: string = readVersion();
