import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * The version of the installed `tideline` package, read from its package.json.
 *
 * @example
 * ```ts
 * import { VERSION } from "tideline";
 * console.log(VERSION); // "0.1.0"
 * ```
 */
export const VERSION: string = (require("../../package.json") as { version: string }).version;
