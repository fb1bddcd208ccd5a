/**
 * Names of resource managers and record types, exactly as PostgreSQL's own tools print them:
 * the resource manager as `pg_waldump` prints it (`rmgr:` column, `--stats` rows) and
 * `pg_walinspect` returns it (`resource_manager`), the record type as the rmgr's `identify`
 * function gives it (the first word of `pg_waldump`'s `desc:`, `pg_walinspect`'s
 * `record_type`).
 *
 * Lookups answer from tables built once per version, so the per-record calls of a decoder do
 * not allocate.
 *
 * @module
 */

import { BUILTIN_RMGRS, RM_MAX_ID, RM_MIN_CUSTOM_ID, type RmgrDef } from "./table.js";
import { checkVersion, type SupportedVersion } from "./versions.js";

/**
 * A resource manager as `rmgrs()` lists it.
 *
 * @example
 * ```ts
 * const heap: RmgrInfo = { id: 10, name: "Heap" };
 * ```
 */
export interface RmgrInfo {
  readonly id: number;
  readonly name: string;
}

/**
 * A record type an rmgr's `identify` function names: `info` is the masked value it matches.
 *
 * @example
 * ```ts
 * const t: RecordTypeInfo = { info: 0x80, name: "INSERT+INIT" };
 * ```
 */
export interface RecordTypeInfo {
  readonly info: number;
  readonly name: string;
}

/**
 * Highest built-in resource manager id (`RM_MAX_BUILTIN_ID`), 21 in 15..18.
 *
 * @example
 * ```ts
 * RM_MAX_BUILTIN_ID; // 21 (LogicalMessage)
 * ```
 */
export const RM_MAX_BUILTIN_ID: number = BUILTIN_RMGRS.length - 1;

/**
 * The built-in resource manager ids by name, as in `rmgrlist.h` (`RM_XLOG_ID` is
 * `RmgrId.XLOG`, `RM_HEAP2_ID` is `RmgrId.Heap2`, ...).
 *
 * @example
 * ```ts
 * RmgrId.Heap; // 10
 * RmgrId.LogicalMessage; // 21
 * ```
 */
export const RmgrId = Object.freeze({
  XLOG: 0,
  Transaction: 1,
  Storage: 2,
  CLOG: 3,
  Database: 4,
  Tablespace: 5,
  MultiXact: 6,
  RelMap: 7,
  Standby: 8,
  Heap2: 9,
  Heap: 10,
  Btree: 11,
  Hash: 12,
  Gin: 13,
  Gist: 14,
  Sequence: 15,
  SPGist: 16,
  BRIN: 17,
  CommitTs: 18,
  ReplicationOrigin: 19,
  Generic: 20,
  LogicalMessage: 21,
} as const);

/** `UNKNOWN (%x)` of `info & ~XLR_INFO_MASK`, as pg_waldump and pg_walinspect print it. */
const UNKNOWN_NAMES: readonly string[] = Object.freeze(
  Array.from({ length: 256 }, (_, info) => `UNKNOWN (${(info & 0xf0).toString(16)})`),
);

/** `custom###`: pg_waldump's name for a custom rmgr whose module it cannot load. */
const CUSTOM_NAMES: readonly string[] = Object.freeze(
  Array.from(
    { length: RM_MAX_ID - RM_MIN_CUSTOM_ID + 1 },
    (_, i) => `custom${String(i + RM_MIN_CUSTOM_ID).padStart(3, "0")}`,
  ),
);

interface VersionTables {
  readonly list: readonly RmgrInfo[];
  /** By rmid: the 256 names `identify` yields for each `xl_info` byte. */
  readonly typeNames: readonly (readonly string[])[];
  /** By rmid: the cases of its identify function, in `info` order. */
  readonly types: readonly (readonly RecordTypeInfo[])[];
}

function inVersion(range: { since?: number; until?: number }, version: SupportedVersion) {
  return (range.since ?? 0) <= version && version <= (range.until ?? Number.POSITIVE_INFINITY);
}

function buildTypes(def: RmgrDef, version: SupportedVersion): readonly RecordTypeInfo[] {
  if (def.mask === "constant") {
    return Object.freeze([Object.freeze({ info: 0, name: def.constantName ?? def.name })]);
  }
  const types = def.types
    .filter((ty) => inVersion(ty, version))
    .map((ty) => Object.freeze({ info: ty.info, name: ty.name }))
    .sort((a, b) => a.info - b.info);
  return Object.freeze(types);
}

function buildNames(def: RmgrDef, types: readonly RecordTypeInfo[]): readonly string[] {
  const byMasked = new Map(types.map((ty) => [ty.info, ty.name]));
  return Object.freeze(
    Array.from({ length: 256 }, (_, info) => {
      if (def.mask === "constant") return def.constantName ?? def.name;
      const masked = def.mask === "xact-opmask" ? info & 0x70 : info & 0xf0;
      return byMasked.get(masked) ?? (UNKNOWN_NAMES[info] as string);
    }),
  );
}

function buildTables(version: SupportedVersion): VersionTables {
  const types = BUILTIN_RMGRS.map((def) => buildTypes(def, version));
  return Object.freeze({
    list: Object.freeze(BUILTIN_RMGRS.map((def) => Object.freeze({ id: def.id, name: def.name }))),
    types: Object.freeze(types),
    typeNames: Object.freeze(BUILTIN_RMGRS.map((def, i) => buildNames(def, types[i] ?? []))),
  });
}

/**
 * Each version's tables, built on first use: building all of them when the module loads
 * cost every command ~10-20 ms of start-up (most never print a name).
 */
const TABLES = new Map<SupportedVersion, VersionTables>();

function tables(version: unknown): VersionTables {
  const v = checkVersion(version);
  let t = TABLES.get(v);
  if (t === undefined) {
    t = buildTables(v);
    TABLES.set(v, t);
  }
  return t;
}

function checkByte(value: unknown, what: string): number {
  if (typeof value !== "number") {
    throw new TypeError(`${what} must be a number, got ${typeof value} ${String(value)}`);
  }
  if (!Number.isInteger(value) || value < 0 || value > 255) {
    throw new RangeError(`${what} ${value} is out of range: expected an integer in 0..255`);
  }
  return value;
}

function checkRmid(rmid: unknown): number {
  const id = checkByte(rmid, "resource manager id");
  if (id > RM_MAX_BUILTIN_ID && id < RM_MIN_CUSTOM_ID) {
    throw new RangeError(
      `resource manager id ${id} is invalid: built-in ids are 0..${RM_MAX_BUILTIN_ID}, custom ids ${RM_MIN_CUSTOM_ID}..${RM_MAX_ID}`,
    );
  }
  return id;
}

/**
 * Whether `rmid` is a valid resource manager id (built-in or custom), as the WAL reader's
 * `RmgrIdIsValid` decides: `0..21` or `128..255`.
 *
 * @example
 * ```ts
 * isValidRmgrId(10); // true
 * isValidRmgrId(42); // false
 * isValidRmgrId(200); // true (custom)
 * ```
 */
export function isValidRmgrId(rmid: number): boolean {
  return (
    Number.isInteger(rmid) &&
    ((rmid >= 0 && rmid <= RM_MAX_BUILTIN_ID) || (rmid >= RM_MIN_CUSTOM_ID && rmid <= RM_MAX_ID))
  );
}

/**
 * Whether `rmid` is a custom resource manager id (`128..255`).
 *
 * @example
 * ```ts
 * isCustomRmgrId(128); // true
 * isCustomRmgrId(21); // false
 * ```
 */
export function isCustomRmgrId(rmid: number): boolean {
  return Number.isInteger(rmid) && rmid >= RM_MIN_CUSTOM_ID && rmid <= RM_MAX_ID;
}

/**
 * The name of resource manager `rmid` in major `version`, as pg_waldump prints it. A custom
 * resource manager (`128..255`) is `custom###`, pg_waldump's name when it cannot load the
 * module (pg_walinspect refuses records of a custom rmgr that is not loaded).
 *
 * @throws TypeError / RangeError naming the value for an unsupported version or an rmid that
 * is not an integer in `0..21` or `128..255`.
 * @example
 * ```ts
 * rmgrName(16, 10); // "Heap"
 * rmgrName(15, 21); // "LogicalMessage"
 * rmgrName(17, 130); // "custom130"
 * rmgrName(17, 42); // throws RangeError
 * ```
 */
export function rmgrName(version: SupportedVersion, rmid: number): string {
  const tab = tables(version);
  const id = checkRmid(rmid);
  return id >= RM_MIN_CUSTOM_ID
    ? (CUSTOM_NAMES[id - RM_MIN_CUSTOM_ID] as string)
    : (tab.list[id] as RmgrInfo).name;
}

/**
 * The record type name of a record of resource manager `rmid` with header byte `xl_info`
 * `info`, in major `version`: what the rmgr's `identify` function returns, or
 * `UNKNOWN (%x)` of `info & 0xF0` when it returns NULL (as pg_waldump and pg_walinspect print
 * it; always so for custom rmgrs). The low four bits (`XLR_INFO_MASK`) never matter.
 *
 * @throws TypeError / RangeError naming the value for an unsupported version, an invalid
 * rmid, or an info that is not an integer in `0..255`.
 * @example
 * ```ts
 * recordTypeName(15, 10, 0x80); // "INSERT+INIT"
 * recordTypeName(16, 10, 0x40); // "HOT_UPDATE"
 * recordTypeName(16, 9, 0x10); // "PRUNE"
 * recordTypeName(17, 9, 0x10); // "PRUNE_ON_ACCESS"
 * recordTypeName(17, 0, 0xe0); // "CHECKPOINT_REDO"
 * recordTypeName(16, 0, 0xe0); // "UNKNOWN (e0)"
 * recordTypeName(18, 1, 0x80); // "COMMIT" (XLOG_XACT_HAS_INFO is ignored)
 * ```
 */
export function recordTypeName(version: SupportedVersion, rmid: number, info: number): string {
  const tab = tables(version);
  const id = checkRmid(rmid);
  const byte = checkByte(info, "xl_info");
  if (id >= RM_MIN_CUSTOM_ID) return UNKNOWN_NAMES[byte] as string;
  return (tab.typeNames[id] as readonly string[])[byte] as string;
}

/**
 * The built-in resource managers of major `version`, in id order: the rows of
 * `pg_waldump --stats` (which adds custom rmgrs only when records of them occur).
 *
 * @throws TypeError / RangeError naming the value for an unsupported version.
 * @example
 * ```ts
 * rmgrs(18).map((r) => r.name).slice(0, 3); // ["XLOG", "Transaction", "Storage"]
 * rmgrs(15).length; // 22
 * ```
 */
export function rmgrs(version: SupportedVersion): readonly RmgrInfo[] {
  return tables(version).list;
}

/**
 * The record types resource manager `rmid` names in major `version`, by masked info value
 * (the cases of its `identify` function). Generic, which names every record `Generic`, has
 * the one entry `{ info: 0, name: "Generic" }`; a custom rmgr has none.
 *
 * @throws TypeError / RangeError naming the value for an unsupported version or invalid rmid.
 * @example
 * ```ts
 * recordTypes(17, RmgrId.Heap2).map((t) => t.name);
 * // ["REWRITE", "PRUNE_ON_ACCESS", "PRUNE_VACUUM_SCAN", "PRUNE_VACUUM_CLEANUP", "VISIBLE",
 * //  "MULTI_INSERT", "LOCK_UPDATED", "NEW_CID", "MULTI_INSERT+INIT"]
 * ```
 */
export function recordTypes(version: SupportedVersion, rmid: number): readonly RecordTypeInfo[] {
  const tab = tables(version);
  const id = checkRmid(rmid);
  return id >= RM_MIN_CUSTOM_ID ? [] : (tab.types[id] as readonly RecordTypeInfo[]);
}
