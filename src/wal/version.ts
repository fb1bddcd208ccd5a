/**
 * Everything about the WAL byte format that depends on the PostgreSQL major version, in one
 * place. The decoder picks a {@link WalFormat} from the magic number of the first page header
 * it reads.
 *
 * Facts (checked against each version's `xlog_internal.h`, `xlogrecord.h`, `pg_control.h` and
 * against segment files written by each server):
 * - `XLOG_PAGE_MAGIC`: 15 `0xD110`, 16 `0xD113`, 17 `0xD116`, 18 `0xD118`.
 * - `xlp_info` flags are the same in 15..18: `0x1` FIRST_IS_CONTRECORD, `0x2` LONG_HEADER,
 *   `0x4` BKP_REMOVABLE, `0x8` FIRST_IS_OVERWRITE_CONTRECORD (later development versions drop
 *   BKP_REMOVABLE and renumber, which is why the flags live in this table).
 * - Block-image flags (`bimg_info`) are the same in 15..18: `0x01` HAS_HOLE, `0x02` APPLY,
 *   `0x04` PGLZ, `0x08` LZ4, `0x10` ZSTD (14 and older used `0x02` IS_COMPRESSED, `0x04` APPLY).
 * - The largest record: 16+ define `XLogRecordMaxSize` as 1020 MiB; 15 only bounds it by
 *   `MaxAllocSize` (1 GiB - 1) when decoding.
 *
 * @module
 */

/**
 * Page header (`xlp_info`) flag values.
 *
 * @example
 * ```ts
 * const continued = (info & walFormat(15).pageInfo.firstIsContrecord) !== 0;
 * ```
 */
export interface PageInfoFlags {
  /** The page starts with the continuation of a record from the previous page. */
  readonly firstIsContrecord: number;
  /** The page has the long (segment-start) header. */
  readonly longHeader: number;
  /** Backup blocks starting on this page are optional (unused by readers). */
  readonly bkpRemovable: number;
  /** The continuation that should start this page was abandoned; a new record starts here. */
  readonly firstIsOverwriteContrecord: number;
  /** All defined bits: any other bit makes the header invalid. */
  readonly all: number;
}

/**
 * Block reference `fork_flags` values.
 *
 * @example
 * ```ts
 * const hasImage = (forkFlags & walFormat(16).blockFlags.hasImage) !== 0;
 * ```
 */
export interface BlockFlags {
  readonly forkMask: number;
  readonly hasImage: number;
  readonly hasData: number;
  readonly willInit: number;
  readonly sameRel: number;
}

/**
 * Block image `bimg_info` values.
 *
 * @example
 * ```ts
 * const lz4 = (bimgInfo & walFormat(17).imageFlags.compressLz4) !== 0;
 * ```
 */
export interface BlockImageFlags {
  readonly hasHole: number;
  readonly apply: number;
  readonly compressPglz: number;
  readonly compressLz4: number;
  readonly compressZstd: number;
}

/**
 * The byte-format facts of one PostgreSQL major version.
 *
 * @example
 * ```ts
 * const f: WalFormat = walFormat(18); // f.pageMagic === 0xD118
 * ```
 */
export interface WalFormat {
  /** PostgreSQL major version. */
  readonly majorVersion: number;
  /** `XLOG_PAGE_MAGIC`. */
  readonly pageMagic: number;
  readonly pageInfo: PageInfoFlags;
  readonly blockFlags: BlockFlags;
  readonly imageFlags: BlockImageFlags;
  /** Highest block reference id (`XLR_MAX_BLOCK_ID`). */
  readonly maxBlockId: number;
  /** Header ids that are not block references. */
  readonly blockIdDataShort: number;
  readonly blockIdDataLong: number;
  readonly blockIdOrigin: number;
  readonly blockIdToplevelXid: number;
  /** Largest `xl_tot_len` a reader of this version accepts. */
  readonly maxRecordSize: number;
  /** Highest built-in resource manager id; ids above it up to 127 are invalid, 128..255 custom. */
  readonly maxBuiltinRmgrId: number;
  /** The XLOG resource manager's id and the info values the decoder acts on. */
  readonly rmXlogId: number;
  readonly xlogSwitchInfo: number;
  readonly xlogOverwriteContrecordInfo: number;
}

const PAGE_INFO_15: PageInfoFlags = Object.freeze({
  firstIsContrecord: 0x0001,
  longHeader: 0x0002,
  bkpRemovable: 0x0004,
  firstIsOverwriteContrecord: 0x0008,
  all: 0x000f,
});

const BLOCK_FLAGS: BlockFlags = Object.freeze({
  forkMask: 0x0f,
  hasImage: 0x10,
  hasData: 0x20,
  willInit: 0x40,
  sameRel: 0x80,
});

const IMAGE_FLAGS_15: BlockImageFlags = Object.freeze({
  hasHole: 0x01,
  apply: 0x02,
  compressPglz: 0x04,
  compressLz4: 0x08,
  compressZstd: 0x10,
});

function format(majorVersion: number, pageMagic: number, maxRecordSize: number): WalFormat {
  return Object.freeze({
    majorVersion,
    pageMagic,
    pageInfo: PAGE_INFO_15,
    blockFlags: BLOCK_FLAGS,
    imageFlags: IMAGE_FLAGS_15,
    maxBlockId: 32,
    blockIdDataShort: 255,
    blockIdDataLong: 254,
    blockIdOrigin: 253,
    blockIdToplevelXid: 252,
    maxRecordSize,
    maxBuiltinRmgrId: 21,
    rmXlogId: 0,
    xlogSwitchInfo: 0x40,
    xlogOverwriteContrecordInfo: 0xd0,
  });
}

const MAX_ALLOC_SIZE = 0x3fff_ffff;
const RECORD_MAX_SIZE_16 = 1020 * 1024 * 1024;

/**
 * The WAL formats this package reads, by major version.
 *
 * @example
 * ```ts
 * WAL_FORMATS[16]?.pageMagic; // 0xD113
 * ```
 */
export const WAL_FORMATS: Readonly<Record<number, WalFormat>> = Object.freeze({
  15: format(15, 0xd110, MAX_ALLOC_SIZE),
  16: format(16, 0xd113, RECORD_MAX_SIZE_16),
  17: format(17, 0xd116, RECORD_MAX_SIZE_16),
  18: format(18, 0xd118, RECORD_MAX_SIZE_16),
});

/**
 * The supported major versions, oldest first.
 *
 * @example
 * ```ts
 * SUPPORTED_MAJOR_VERSIONS; // [15, 16, 17, 18]
 * ```
 */
export const SUPPORTED_MAJOR_VERSIONS: readonly number[] = Object.freeze([15, 16, 17, 18]);

/**
 * The format whose page magic is `magic`, or `undefined` for an unknown magic.
 *
 * @example
 * ```ts
 * formatForMagic(0xd116)?.majorVersion; // 17
 * formatForMagic(0x1234); // undefined
 * ```
 */
export function formatForMagic(magic: number): WalFormat | undefined {
  for (const v of SUPPORTED_MAJOR_VERSIONS) {
    const f = WAL_FORMATS[v];
    if (f !== undefined && f.pageMagic === magic) return f;
  }
  return undefined;
}

/**
 * The major version whose WAL page magic is `magic`, or `undefined`.
 *
 * @example
 * ```ts
 * majorVersionForMagic(0xd110); // 15
 * ```
 */
export function majorVersionForMagic(magic: number): number | undefined {
  return formatForMagic(magic)?.majorVersion;
}

/**
 * The format of a major version.
 *
 * @throws RangeError naming the version when it is not supported.
 * @example
 * ```ts
 * walFormat(18).pageMagic; // 0xD118
 * ```
 */
export function walFormat(majorVersion: number): WalFormat {
  const f = WAL_FORMATS[majorVersion];
  if (f === undefined) {
    throw new RangeError(
      `unsupported PostgreSQL major version ${majorVersion}: expected one of ${SUPPORTED_MAJOR_VERSIONS.join(", ")}`,
    );
  }
  return f;
}

/**
 * The format used before any page header has been seen (e.g. when decoding starts mid-page):
 * the record layout is the same in every supported version; the most permissive record size
 * limit applies until a page header names the version.
 *
 * @example
 * ```ts
 * DEFAULT_WAL_FORMAT.maxBlockId; // 32
 * ```
 */
export const DEFAULT_WAL_FORMAT: WalFormat = walFormat(15);

/**
 * Fork names as PostgreSQL prints them, by fork number.
 *
 * @example
 * ```ts
 * FORK_NAMES[1]; // "fsm"
 * ```
 */
export const FORK_NAMES: readonly string[] = Object.freeze(["main", "fsm", "vm", "init"]);
