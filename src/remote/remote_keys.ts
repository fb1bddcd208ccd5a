/**
 * Where a timeline's objects live in remote storage.
 *
 * @module
 */

/**
 * The object keys of a timeline in remote storage: its index, its layer files, and the
 * PostgreSQL history files its WAL switched to.
 *
 * @example
 * ```ts
 * import { remoteKeys } from "tideline/remote";
 * remoteKeys.index("main"); // "timelines/main/index.json"
 * remoteKeys.layer("main", "0000000001000000-0000000001A3C2D8.layer");
 * remoteKeys.history("main", "00000002.history"); // "timelines/main/history/00000002.history"
 * ```
 */
export const remoteKeys = {
  index: (timeline: string) => `timelines/${timeline}/index.json`,
  layer: (timeline: string, file: string) => `timelines/${timeline}/layers/${file}`,
  history: (timeline: string, file: string) => `timelines/${timeline}/history/${file}`,
};
