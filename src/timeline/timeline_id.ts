/**
 * Timeline identifiers.
 *
 * @module
 */

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Whether `id` is a valid timeline id: 1 to 64 letters, digits, `-` or `_`.
 *
 * @example
 * ```ts
 * import { isTimelineId } from "tideline/timeline";
 * isTimelineId("main"); // true
 * isTimelineId("../etc"); // false
 * ```
 */
export function isTimelineId(id: unknown): id is string {
  return typeof id === "string" && ID.test(id);
}

/**
 * Returns `id` if valid, else throws `RangeError` naming it.
 *
 * @example
 * ```ts
 * import { checkTimelineId } from "tideline/timeline";
 * checkTimelineId("orders-db"); // "orders-db"
 * ```
 */
export function checkTimelineId(id: unknown): string {
  if (!isTimelineId(id)) {
    throw new RangeError(
      `Invalid timeline id ${JSON.stringify(id)}: expected 1 to 64 letters, digits, "-" or "_"`,
    );
  }
  return id;
}
