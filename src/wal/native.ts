/**
 * The optional native CRC-32C addon (`native/crc32c.c`, built by `scripts/build-native.mjs`):
 * hardware CRC-32C for a whole batch of WAL records in one call. Without it (no C compiler
 * when the package was built, or `TIDELINE_NATIVE=0`), the same values are computed in
 * JavaScript and `@node-rs/crc32`, only slower.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * What the addon offers. Offsets are relative to the `buf` view passed.
 *
 * @example
 * ```ts
 * const n = nativeCrc();
 * if (n !== undefined) n.crc32c(Buffer.from("123456789"), 0, 9, 0); // 0xE3069283
 * ```
 */
export interface NativeCrc {
  /** CRC-32C of `buf[start, end)`, continuing from `crc` (0 to start; `@node-rs/crc32`'s convention). */
  crc32c(buf: Uint8Array, start: number, end: number, crc: number): number;
  /** The same without the CPU's CRC instruction (a table), for tests. */
  crc32cPortable(buf: Uint8Array, start: number, end: number, crc: number): number;
  /** The CRC (`xl_crc`) of the WAL record at `offset`, whose `xl_tot_len` bytes lie in `buf`. */
  recordCrc(buf: Uint8Array, offset: number): number;
  /** `recordCrc` of the records at `offsets[0, count)`, into `out` (as int32). */
  recordCrcs(buf: Uint8Array, offsets: Int32Array, count: number, out: Int32Array): void;
  /**
   * Lists where the WAL records of `buf` from the record start `start` (at an LSN whose low 32
   * bits are `startLo`) should start, following `xl_tot_len` and the page headers (`pageSize`
   * bytes a page; `magic`, and the `longHeader` and `contrecord` flags of `xlp_info`, of the WAL
   * format), and computes their CRCs: the offsets of the records lying whole in `buf` go to
   * `offsets`, their CRCs to `out` (`recordCrc`; for a record continued on later pages, the
   * CRC of its bytes after the page headers, as the decoder assembles them); `result[0]` gets
   * the count and `result[1]` the offset where the walk stopped (at anything unexpected, the
   * end of `buf` or a full `offsets`).
   */
  listRecordCrcs(
    buf: Uint8Array,
    start: number,
    startLo: number,
    pageSize: number,
    magic: number,
    longHeader: number,
    contrecord: number,
    offsets: Int32Array,
    out: Int32Array,
    result: Int32Array,
  ): void;
  /**
   * On libuv's thread pool: reads up to `length` bytes of file `fd` at `position` into `buf`
   * (until the end of the file), then does {@link NativeCrc.listRecordCrcs} on them from offset 0
   * (a page start), with the magic of the page header found there. `callback(null, n)` runs on
   * the calling thread with the bytes read, or `callback(error)` with pread's error (`code`
   * such as "EIO", `errno`, `syscall`). `fd` must stay open, and `buf` and the arrays
   * unchanged, until then.
   */
  readRecordCrcsAsync(
    fd: number,
    position: number,
    buf: Uint8Array,
    length: number,
    pageSize: number,
    longHeader: number,
    contrecord: number,
    offsets: Int32Array,
    out: Int32Array,
    result: Int32Array,
    callback: (error: Error | null, bytesRead?: number) => void,
  ): void;
  /**
   * On libuv's thread pool: writes all of `buf` at `position` of file `fd` and then, when
   * `startWriteback` is true, starts writing that range to disk without waiting for it
   * (Linux's `sync_file_range(SYNC_FILE_RANGE_WRITE)`; nothing elsewhere), so that a later
   * fsync has less left to do. Not a durability guarantee. `callback(null, n)`, or
   * `callback(error)` (`code` such as "EBADF", `errno`, `syscall` "pwrite"), runs on the
   * calling thread; `fd` must stay open, and `buf` unchanged, until then.
   */
  writeAsync(
    fd: number,
    position: number,
    buf: Uint8Array,
    startWriteback: boolean,
    callback: (error: Error | null, bytesWritten?: number) => void,
  ): void;
  /** `"sse4.2"` (the x86-64 instruction) or `"table"`. */
  readonly impl: string;
}

const ADDON = join("native", "build", "crc32c.node");

/**
 * Where the package's `native/build/crc32c.node` is, seen from this module: the package root
 * is two levels up from `dist/wal/` (the published build) and from `dist/cli/` (the bundled
 * command line), three from `.build/src/wal/` (the tests' build). Nothing else is searched.
 */
function findAddon(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const up =
    (basename(here) === "wal" || basename(here) === "cli") && basename(dirname(here)) === "dist"
      ? 2
      : basename(here) === "wal" &&
          basename(dirname(here)) === "src" &&
          basename(dirname(dirname(here))) === ".build"
        ? 3
        : undefined;
  if (up === undefined) return undefined;
  let root = here;
  for (let i = 0; i < up; i++) root = dirname(root);
  const candidate = join(root, ADDON);
  return existsSync(candidate) ? candidate : undefined;
}

let loaded: NativeCrc | undefined | null = null;
let loadError: string | undefined;

/**
 * The native addon, or `undefined` when it was not built, cannot be loaded, or
 * `TIDELINE_NATIVE=0` is set. Loaded once.
 *
 * @example
 * ```ts
 * console.log(nativeCrc()?.impl ?? "JavaScript CRC-32C");
 * ```
 */
export function nativeCrc(): NativeCrc | undefined {
  if (loaded !== null) return loaded;
  loaded = undefined;
  if (process.env.TIDELINE_NATIVE === "0") {
    loadError = "disabled by TIDELINE_NATIVE=0";
    return undefined;
  }
  const path = findAddon();
  if (path === undefined) {
    loadError = `${ADDON} not built (npm run build builds it when a C compiler is present)`;
    return undefined;
  }
  try {
    const mod = createRequire(import.meta.url)(path) as NativeCrc;
    const missing = (
      [
        "crc32c",
        "recordCrc",
        "recordCrcs",
        "listRecordCrcs",
        "readRecordCrcsAsync",
        "writeAsync",
      ] as const
    ).filter((name) => typeof mod[name] !== "function");
    if (missing.length > 0) {
      loadError = `${path} is not this version's CRC-32C addon (no ${missing.join(", ")}; rebuild it with npm run build)`;
      return undefined;
    }
    loaded = mod;
  } catch (e) {
    loadError = `${path} could not be loaded: ${(e as Error).message}`;
  }
  return loaded;
}

/**
 * How CRC-32C is computed in this process, for diagnostics: e.g. `native (sse4.2)` or
 * `JavaScript (native addon not built ...)`.
 *
 * @example
 * ```ts
 * console.error(`CRC-32C: ${crcImplementation()}`);
 * ```
 */
export function crcImplementation(): string {
  const n = nativeCrc();
  return n !== undefined ? `native (${n.impl})` : `JavaScript (${loadError ?? "no native addon"})`;
}
