/**
 * The PostgreSQL major versions whose resource managers and record types this package names,
 * and the check every public lookup applies to a version argument.
 *
 * @module
 */

/**
 * The supported PostgreSQL major versions, oldest first.
 *
 * @example
 * ```ts
 * SUPPORTED_VERSIONS; // [15, 16, 17, 18]
 * SUPPORTED_VERSIONS.includes(16); // true
 * ```
 */
export const SUPPORTED_VERSIONS = Object.freeze([15, 16, 17, 18] as const);

/**
 * A supported PostgreSQL major version.
 *
 * @example
 * ```ts
 * const v: SupportedVersion = 17;
 * ```
 */
export type SupportedVersion = (typeof SUPPORTED_VERSIONS)[number];

/**
 * Whether `value` is a supported major version.
 *
 * @example
 * ```ts
 * isSupportedVersion(18); // true
 * isSupportedVersion(14); // false
 * isSupportedVersion("16"); // false
 * ```
 */
export function isSupportedVersion(value: unknown): value is SupportedVersion {
  return (SUPPORTED_VERSIONS as readonly unknown[]).includes(value);
}

/**
 * Returns `version` when it is supported.
 *
 * @throws TypeError naming the value when it is not a number.
 * @throws RangeError naming the value when it is a number but not a supported major version.
 * @example
 * ```ts
 * checkVersion(15); // 15
 * checkVersion(14); // throws RangeError: unsupported PostgreSQL major version 14 ...
 * ```
 */
export function checkVersion(version: unknown): SupportedVersion {
  if (isSupportedVersion(version)) return version;
  if (typeof version !== "number") {
    throw new TypeError(
      `PostgreSQL major version must be a number, got ${typeof version} ${String(version)}`,
    );
  }
  throw new RangeError(
    `unsupported PostgreSQL major version ${version}: expected one of ${SUPPORTED_VERSIONS.join(", ")}`,
  );
}
