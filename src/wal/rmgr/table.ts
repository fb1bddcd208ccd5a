/**
 * The built-in resource managers of PostgreSQL 15..18 and the record type names their
 * `identify` functions return: the single place where these facts, and every difference
 * between major versions, live.
 *
 * Sources, per branch (REL_15_STABLE .. REL_18_STABLE): `src/include/access/rmgrlist.h` (ids
 * and names), `src/backend/access/rmgrdesc/*desc.c` (the `*_identify` functions) and the
 * headers that define their info values (`catalog/pg_control.h`, `access/xact.h`,
 * `catalog/storage_xlog.h`, `access/clog.h`, `commands/dbcommands_xlog.h`,
 * `commands/tablespace.h`, `access/multixact.h`, `utils/relmapper.h`, `storage/standbydefs.h`,
 * `access/heapam_xlog.h`, `access/nbtxlog.h`, `access/hash_xlog.h`, `access/ginxlog.h`,
 * `access/gistxlog.h`, `commands/sequence.h`, `access/spgxlog.h`, `access/brin_xlog.h`,
 * `access/commit_ts.h`, `replication/origin.h`, `replication/message.h`). The tests check
 * every entry against the servers themselves (`pg_walinspect`), for every version.
 *
 * How each `identify` function picks its case (`XLR_INFO_MASK` is `0x0F`, the low bits that
 * belong to the WAL machinery):
 * - most switch on `info & ~XLR_INFO_MASK`, so a high bit such as Heap's
 *   `XLOG_HEAP_INIT_PAGE` (`0x80`) only names a type where an explicit case lists it
 *   (`INSERT+INIT`, `UPDATE+INIT`, `HOT_UPDATE+INIT`, `MULTI_INSERT+INIT`, BRIN's
 *   `INSERT+INIT`/`UPDATE+INIT`); e.g. Heap `0x90` (DELETE with the init bit) is unknown;
 * - Transaction switches on `info & XLOG_XACT_OPMASK` (`0x70`): its `0x80` bit
 *   (`XLOG_XACT_HAS_INFO`) never changes the name;
 * - Generic's returns `"Generic"` whatever the info.
 *
 * Version differences (everything else is identical in 15, 16, 17 and 18):
 * - XLOG: `CHECKPOINT_REDO` (`0xE0`) from 17.
 * - Heap2: 15 and 16 have `PRUNE` (`0x10`), `VACUUM` (`0x20`), `FREEZE_PAGE` (`0x30`); 17
 *   replaced them with `PRUNE_ON_ACCESS`, `PRUNE_VACUUM_SCAN`, `PRUNE_VACUUM_CLEANUP` on the
 *   same values.
 *
 * @module
 */

import type { SupportedVersion } from "./versions.js";

/**
 * How an rmgr's `identify` function reduces `xl_info` before its `switch`.
 *
 * @example
 * ```ts
 * BUILTIN_RMGRS[1]?.mask; // "xact-opmask" (Transaction)
 * ```
 */
export type IdentifyMask =
  /** `info & ~XLR_INFO_MASK` (`0xF0`). */
  | "high-bits"
  /** `info & XLOG_XACT_OPMASK` (`0x70`). */
  | "xact-opmask"
  /** The function ignores `info` and always returns {@link RmgrDef.constantName}. */
  | "constant";

/**
 * One case of an `identify` function.
 *
 * @example
 * ```ts
 * const prune: RecordTypeDef = { info: 0x10, name: "PRUNE", until: 16 };
 * ```
 */
export interface RecordTypeDef {
  /** The masked info value the case matches. */
  readonly info: number;
  /** The name it returns. */
  readonly name: string;
  /** First major version with this case; absent: all supported versions. */
  readonly since?: SupportedVersion;
  /** Last major version with this case; absent: still present in the newest. */
  readonly until?: SupportedVersion;
}

/**
 * A built-in resource manager.
 *
 * @example
 * ```ts
 * const seq: RmgrDef = { id: 15, name: "Sequence", mask: "high-bits", types: [{ info: 0, name: "LOG" }] };
 * ```
 */
export interface RmgrDef {
  /** `RmgrId`, the record header's `xl_rmid`. */
  readonly id: number;
  /** The name from `rmgrlist.h`, as pg_waldump and pg_walinspect print it. */
  readonly name: string;
  readonly mask: IdentifyMask;
  /** The answer of a `"constant"` identify function. */
  readonly constantName?: string;
  readonly types: readonly RecordTypeDef[];
}

const t = (info: number, name: string, range: Omit<RecordTypeDef, "info" | "name"> = {}) =>
  Object.freeze({ info, name, ...range });

/**
 * The built-in resource managers of PostgreSQL 15..18, in id order (the ids and names are
 * the same in all four versions).
 *
 * @example
 * ```ts
 * BUILTIN_RMGRS[10]?.name; // "Heap"
 * BUILTIN_RMGRS.find((r) => r.name === "Btree")?.types[0]; // { info: 0x00, name: "INSERT_LEAF" }
 * ```
 */
export const BUILTIN_RMGRS: readonly RmgrDef[] = Object.freeze(
  [
    {
      id: 0,
      name: "XLOG",
      mask: "high-bits",
      types: [
        t(0x00, "CHECKPOINT_SHUTDOWN"),
        t(0x10, "CHECKPOINT_ONLINE"),
        t(0x20, "NOOP"),
        t(0x30, "NEXTOID"),
        t(0x40, "SWITCH"),
        t(0x50, "BACKUP_END"),
        t(0x60, "PARAMETER_CHANGE"),
        t(0x70, "RESTORE_POINT"),
        t(0x80, "FPW_CHANGE"),
        t(0x90, "END_OF_RECOVERY"),
        t(0xa0, "FPI_FOR_HINT"),
        t(0xb0, "FPI"),
        t(0xd0, "OVERWRITE_CONTRECORD"),
        t(0xe0, "CHECKPOINT_REDO", { since: 17 }),
      ],
    },
    {
      id: 1,
      name: "Transaction",
      mask: "xact-opmask",
      types: [
        t(0x00, "COMMIT"),
        t(0x10, "PREPARE"),
        t(0x20, "ABORT"),
        t(0x30, "COMMIT_PREPARED"),
        t(0x40, "ABORT_PREPARED"),
        t(0x50, "ASSIGNMENT"),
        t(0x60, "INVALIDATION"),
      ],
    },
    { id: 2, name: "Storage", mask: "high-bits", types: [t(0x10, "CREATE"), t(0x20, "TRUNCATE")] },
    { id: 3, name: "CLOG", mask: "high-bits", types: [t(0x00, "ZEROPAGE"), t(0x10, "TRUNCATE")] },
    {
      id: 4,
      name: "Database",
      mask: "high-bits",
      types: [t(0x00, "CREATE_FILE_COPY"), t(0x10, "CREATE_WAL_LOG"), t(0x20, "DROP")],
    },
    { id: 5, name: "Tablespace", mask: "high-bits", types: [t(0x00, "CREATE"), t(0x10, "DROP")] },
    {
      id: 6,
      name: "MultiXact",
      mask: "high-bits",
      types: [
        t(0x00, "ZERO_OFF_PAGE"),
        t(0x10, "ZERO_MEM_PAGE"),
        t(0x20, "CREATE_ID"),
        t(0x30, "TRUNCATE_ID"),
      ],
    },
    { id: 7, name: "RelMap", mask: "high-bits", types: [t(0x00, "UPDATE")] },
    {
      id: 8,
      name: "Standby",
      mask: "high-bits",
      types: [t(0x00, "LOCK"), t(0x10, "RUNNING_XACTS"), t(0x20, "INVALIDATIONS")],
    },
    {
      id: 9,
      name: "Heap2",
      mask: "high-bits",
      types: [
        t(0x00, "REWRITE"),
        t(0x10, "PRUNE", { until: 16 }),
        t(0x20, "VACUUM", { until: 16 }),
        t(0x30, "FREEZE_PAGE", { until: 16 }),
        t(0x10, "PRUNE_ON_ACCESS", { since: 17 }),
        t(0x20, "PRUNE_VACUUM_SCAN", { since: 17 }),
        t(0x30, "PRUNE_VACUUM_CLEANUP", { since: 17 }),
        t(0x40, "VISIBLE"),
        t(0x50, "MULTI_INSERT"),
        t(0xd0, "MULTI_INSERT+INIT"),
        t(0x60, "LOCK_UPDATED"),
        t(0x70, "NEW_CID"),
      ],
    },
    {
      id: 10,
      name: "Heap",
      mask: "high-bits",
      types: [
        t(0x00, "INSERT"),
        t(0x80, "INSERT+INIT"),
        t(0x10, "DELETE"),
        t(0x20, "UPDATE"),
        t(0xa0, "UPDATE+INIT"),
        t(0x30, "TRUNCATE"),
        t(0x40, "HOT_UPDATE"),
        t(0xc0, "HOT_UPDATE+INIT"),
        t(0x50, "HEAP_CONFIRM"),
        t(0x60, "LOCK"),
        t(0x70, "INPLACE"),
      ],
    },
    {
      id: 11,
      name: "Btree",
      mask: "high-bits",
      types: [
        t(0x00, "INSERT_LEAF"),
        t(0x10, "INSERT_UPPER"),
        t(0x20, "INSERT_META"),
        t(0x30, "SPLIT_L"),
        t(0x40, "SPLIT_R"),
        t(0x50, "INSERT_POST"),
        t(0x60, "DEDUP"),
        t(0x70, "DELETE"),
        t(0x80, "UNLINK_PAGE"),
        t(0x90, "UNLINK_PAGE_META"),
        t(0xa0, "NEWROOT"),
        t(0xb0, "MARK_PAGE_HALFDEAD"),
        t(0xc0, "VACUUM"),
        t(0xd0, "REUSE_PAGE"),
        t(0xe0, "META_CLEANUP"),
      ],
    },
    {
      id: 12,
      name: "Hash",
      mask: "high-bits",
      types: [
        t(0x00, "INIT_META_PAGE"),
        t(0x10, "INIT_BITMAP_PAGE"),
        t(0x20, "INSERT"),
        t(0x30, "ADD_OVFL_PAGE"),
        t(0x40, "SPLIT_ALLOCATE_PAGE"),
        t(0x50, "SPLIT_PAGE"),
        t(0x60, "SPLIT_COMPLETE"),
        t(0x70, "MOVE_PAGE_CONTENTS"),
        t(0x80, "SQUEEZE_PAGE"),
        t(0x90, "DELETE"),
        t(0xa0, "SPLIT_CLEANUP"),
        t(0xb0, "UPDATE_META_PAGE"),
        t(0xc0, "VACUUM_ONE_PAGE"),
      ],
    },
    {
      id: 13,
      name: "Gin",
      mask: "high-bits",
      types: [
        t(0x10, "CREATE_PTREE"),
        t(0x20, "INSERT"),
        t(0x30, "SPLIT"),
        t(0x40, "VACUUM_PAGE"),
        t(0x50, "DELETE_PAGE"),
        t(0x60, "UPDATE_META_PAGE"),
        t(0x70, "INSERT_LISTPAGE"),
        t(0x80, "DELETE_LISTPAGE"),
        t(0x90, "VACUUM_DATA_LEAF_PAGE"),
      ],
    },
    {
      id: 14,
      name: "Gist",
      mask: "high-bits",
      types: [
        t(0x00, "PAGE_UPDATE"),
        t(0x10, "DELETE"),
        t(0x20, "PAGE_REUSE"),
        t(0x30, "PAGE_SPLIT"),
        t(0x60, "PAGE_DELETE"),
        t(0x70, "ASSIGN_LSN"),
      ],
    },
    { id: 15, name: "Sequence", mask: "high-bits", types: [t(0x00, "LOG")] },
    {
      id: 16,
      name: "SPGist",
      mask: "high-bits",
      types: [
        t(0x10, "ADD_LEAF"),
        t(0x20, "MOVE_LEAFS"),
        t(0x30, "ADD_NODE"),
        t(0x40, "SPLIT_TUPLE"),
        t(0x50, "PICKSPLIT"),
        t(0x60, "VACUUM_LEAF"),
        t(0x70, "VACUUM_ROOT"),
        t(0x80, "VACUUM_REDIRECT"),
      ],
    },
    {
      id: 17,
      name: "BRIN",
      mask: "high-bits",
      types: [
        t(0x00, "CREATE_INDEX"),
        t(0x10, "INSERT"),
        t(0x90, "INSERT+INIT"),
        t(0x20, "UPDATE"),
        t(0xa0, "UPDATE+INIT"),
        t(0x30, "SAMEPAGE_UPDATE"),
        t(0x40, "REVMAP_EXTEND"),
        t(0x50, "DESUMMARIZE"),
      ],
    },
    {
      id: 18,
      name: "CommitTs",
      mask: "high-bits",
      types: [t(0x00, "ZEROPAGE"), t(0x10, "TRUNCATE")],
    },
    {
      id: 19,
      name: "ReplicationOrigin",
      mask: "high-bits",
      types: [t(0x00, "SET"), t(0x10, "DROP")],
    },
    { id: 20, name: "Generic", mask: "constant", constantName: "Generic", types: [] },
    { id: 21, name: "LogicalMessage", mask: "high-bits", types: [t(0x00, "MESSAGE")] },
  ].map((r) => Object.freeze({ ...r, types: Object.freeze(r.types) })) as RmgrDef[],
);

/**
 * Lowest id of a custom resource manager (`RM_MIN_CUSTOM_ID`); ids between the last built-in
 * one and this are invalid in every supported version.
 *
 * @example
 * ```ts
 * RM_MIN_CUSTOM_ID; // 128
 * ```
 */
export const RM_MIN_CUSTOM_ID = 128;

/**
 * Highest resource manager id (`RM_MAX_CUSTOM_ID`, `RM_MAX_ID`).
 *
 * @example
 * ```ts
 * RM_MAX_ID; // 255
 * ```
 */
export const RM_MAX_ID = 255;
