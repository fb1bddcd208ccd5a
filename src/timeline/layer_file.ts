/**
 * Immutable layer files: a frozen layer's WAL bytes, its record index and its block
 * index, written once, fsynced, and named by their LSN range.
 *
 * Layout (little-endian):
 * - header, 64 bytes: magic `TIDELYR1`, u32 format version, u32 compression (0 none,
 *   1 lz4 block, 2 zstd, per chunk),
 *   u64 start, u64 end, u64 system id, u32 PostgreSQL timeline, u32 PostgreSQL major,
 *   u32 record count, u32 block-reference count, u32 chunk count, u32 chunk size;
 * - the WAL bytes in chunks of `chunk size` (the last one shorter);
 * - the chunk table: per chunk u64 file offset, u32 stored length, u32 CRC32C of the
 *   stored (maybe compressed) bytes;
 * - the record table and the block table (see `layer_tables.ts`), column by column;
 * - footer, 32 bytes: u64 offsets of the chunk, record and block tables, u32 CRC32C of
 *   the header, the tables and these offsets, magic `TEND`.
 * Every read of WAL bytes checks its chunk's CRC; opening checks the metadata CRC.
 *
 * @module
 */
import { open, rename, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import * as zlib from "node:zlib";
import type { CancellationToken } from "../lifecycle/index.js";
import { crc32c, type Lsn, type NativeCrc, nativeCrc } from "../wal/index.js";
import { LayerCorruptError } from "./errors.js";
import { fsyncDir, writeFully } from "./fs_util.js";
import type { InMemoryLayer } from "./in_memory_layer.js";
import { BlockTable, RecordTable } from "./layer_tables.js";

const MAGIC = Buffer.from("TIDELYR1");
const END_MAGIC = Buffer.from("TEND");
const HEADER = 64;
const FOOTER = 32;
const FORMAT_VERSION = 1;
/** WAL bytes per chunk: the unit of checksumming and of random reads. */
export const LAYER_CHUNK_SIZE = 1 << 20;

/** How a layer file's WAL chunks are stored. */
export type LayerCompression = "none" | "lz4" | "zstd";

const COMPRESSION_CODES: Record<LayerCompression, number> = { none: 0, lz4: 1, zstd: 2 };
const zstd = zlib as unknown as {
  zstdCompress?: (buf: Buffer, cb: (err: Error | null, out: Buffer) => void) => void;
  zstdDecompressSync?: (buf: Buffer) => Buffer;
};

/**
 * Checks that `compression` is known and available on this Node.js (zstd needs 22.15+).
 *
 * @example
 * ```ts
 * import { checkLayerCompression } from "tideline/timeline";
 * checkLayerCompression("lz4"); // "lz4"
 * ```
 */
export function checkLayerCompression(compression: unknown): LayerCompression {
  if (compression !== "none" && compression !== "lz4" && compression !== "zstd") {
    throw new RangeError(
      `Unknown layer compression ${JSON.stringify(compression)}: expected "none", "lz4" or "zstd"`,
    );
  }
  if (compression === "zstd" && zstd.zstdCompress === undefined) {
    throw new RangeError(
      `Layer compression "zstd" needs Node.js 22.15 or newer (this is ${process.version}); use "lz4"`,
    );
  }
  return compression;
}

type Lz4 = typeof import("lz4-napi");
let lz4Module: Lz4 | undefined;

/** lz4-napi, loaded on first use: most timelines do not compress, and it costs start-up time. */
async function loadLz4(): Promise<Lz4> {
  lz4Module ??= await import("lz4-napi");
  return lz4Module;
}

async function compressChunk(data: Buffer, compression: LayerCompression): Promise<Buffer> {
  if (compression === "lz4") return (await loadLz4()).compress(data);
  if (compression === "zstd") {
    return new Promise((resolve, reject) =>
      zstd.zstdCompress!(data, (err, out) => (err ? reject(err) : resolve(out))),
    );
  }
  return data;
}

/** `lz4` must be loaded (`loadLz4`) before an lz4 chunk is decompressed. */
function decompressChunk(stored: Buffer, code: number, path: string, lz4: Lz4 | undefined): Buffer {
  if (code === 0) return stored;
  if (code === 1) return lz4!.uncompressSync(stored);
  if (code === 2) {
    if (zstd.zstdDecompressSync === undefined) {
      throw new LayerCorruptError(
        path,
        `it is zstd-compressed, which needs Node.js 22.15+ (this is ${process.version})`,
      );
    }
    return zstd.zstdDecompressSync(stored);
  }
  throw new LayerCorruptError(path, `unknown compression code ${code}`);
}

/** What a layer file says about itself. */
export interface LayerMeta {
  /** The PostgreSQL cluster's system identifier (0 when not known yet). */
  systemId: bigint;
  /** The PostgreSQL timeline of its WAL. */
  pgTimeline: number;
  /** The PostgreSQL major version of its WAL (0 when not known). */
  pgVersion: number;
}

/** `native.writeAsync` of all of `data`, as a promise. */
function nativeWrite(
  native: NativeCrc,
  fd: number,
  position: number,
  data: Uint8Array,
  startWriteback: boolean,
): Promise<void> {
  return new Promise((resolve, reject) => {
    native.writeAsync(fd, position, data, startWriteback, (error) => {
      if (error === null) resolve();
      else reject(error);
    });
  });
}

/** Total bytes of `parts`. */
function byteLength(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

const hex16 = (lsn: Lsn) => lsn.toString(16).toUpperCase().padStart(16, "0");

/**
 * The file name of a layer: its start and end LSN, 16 hex digits each.
 *
 * @example
 * ```ts
 * import { layerFileName } from "tideline/timeline";
 * layerFileName(0x1000000n, 0x1a3c2d8n); // "0000000001000000-0000000001A3C2D8.layer"
 * ```
 */
export function layerFileName(start: Lsn, end: Lsn): string {
  return `${hex16(start)}-${hex16(end)}.layer`;
}

/**
 * The LSN range in a layer file name, or `undefined` if it is not one.
 *
 * @example
 * ```ts
 * import { parseLayerFileName } from "tideline/timeline";
 * parseLayerFileName("0000000001000000-0000000001A3C2D8.layer"); // { start: 16777216n, end: 27509464n }
 * ```
 */
export function parseLayerFileName(name: string): { start: Lsn; end: Lsn } | undefined {
  const m = /^([0-9A-F]{16})-([0-9A-F]{16})\.layer$/.exec(name);
  if (m === null) return undefined;
  const start = BigInt(`0x${m[1]}`);
  const end = BigInt(`0x${m[2]}`);
  return end > start ? { start, end } : undefined;
}

/**
 * The buffers WAL chunks are copied into before they are written, kept for the next layer:
 * a new 1 MiB buffer per layer was new memory (page faults) every time.
 */
const copyBuffers: Buffer[] = [];
/** Buffers kept (one per layer write running at the same time). */
const MAX_COPY_BUFFERS = 4;

/**
 * Writes a frozen layer as `<dir>/<start>-<end>.layer`: to a temporary file first,
 * fsynced, renamed into place, and the directory fsynced, so the file is either whole
 * or absent after a crash (`fsync: false` skips the fsyncs: for tests and benchmarks
 * only). Checks `token` between chunks (a cancelled write removes its temporary file and
 * throws `CancelledError`). Returns the file's name and size, and the file opened for
 * reading: its tables come from memory, not read back.
 *
 * The WAL is copied chunk by chunk into one reused buffer, which is then written. Handing
 * the layer's own buffers (views of the socket's reads) to `writev` instead saves the copy
 * but, on the benchmark machine (a KVM guest), the kernel then spent 0.4-0.8 s more system
 * time per 611 MB copying them into the page cache than from one buffer the copy had just
 * brought into cache, far more than the copy costs (see BENCHMARKS.md). Chunks are written
 * one at a time: writing four at once (fewer hand-offs to the thread pool) made the fsync-ing
 * runs of the ingest benchmark 0.3-0.5 s slower there. With fsync, each chunk's writeback
 * starts as soon as it is written (the native addon's `writeAsync`, on Linux).
 *
 * @example
 * ```ts
 * import { writeLayerFile } from "tideline/timeline";
 * // const { name } = await writeLayerFile(dir, frozenLayer, { systemId, pgTimeline: 1, pgVersion: 15 }, token);
 * ```
 */
export async function writeLayerFile(
  dir: string,
  layer: InMemoryLayer,
  meta: LayerMeta,
  token: CancellationToken,
  options: { fsync?: boolean; compression?: LayerCompression } = {},
): Promise<{ name: string; size: number; layer?: DiskLayer }> {
  if (!layer.frozen) throw new TypeError("Only a frozen layer can be written");
  const fsync = options.fsync ?? true;
  const compression = checkLayerCompression(options.compression ?? "none");
  const name = layerFileName(layer.start, layer.end);
  const tmp = join(dir, `${name}.tmp`);
  const file = await open(tmp, "w");
  let closed = false;
  try {
    const chunkCount = Math.ceil(layer.size / LAYER_CHUNK_SIZE);
    const header = Buffer.alloc(HEADER);
    MAGIC.copy(header, 0);
    header.writeUInt32LE(FORMAT_VERSION, 8);
    header.writeUInt32LE(COMPRESSION_CODES[compression], 12);
    header.writeBigUInt64LE(layer.start, 16);
    header.writeBigUInt64LE(layer.end, 24);
    header.writeBigUInt64LE(meta.systemId, 32);
    header.writeUInt32LE(meta.pgTimeline, 40);
    header.writeUInt32LE(meta.pgVersion, 44);
    header.writeUInt32LE(layer.records.length, 48);
    header.writeUInt32LE(layer.blocks.length, 52);
    header.writeUInt32LE(chunkCount, 56);
    header.writeUInt32LE(LAYER_CHUNK_SIZE, 60);
    await file.write(header, 0, HEADER, 0);

    const chunkTable = Buffer.alloc(chunkCount * 16);
    let offset = HEADER;
    // With the native addon, a chunk is written by a pool job which, with fsync, also starts
    // writing it to disk at once (on Linux), so that the disk works while the next chunks are
    // made and the fsync below finds little left to write. (On the pool: it can block while
    // the disk's queue is full, and the ingest thread must not.)
    const native = nativeCrc();
    const buf = copyBuffers.pop() ?? Buffer.allocUnsafeSlow(LAYER_CHUNK_SIZE);
    try {
      for (let i = 0; i < chunkCount; i++) {
        token.throwIfCancelled();
        const from = layer.start + BigInt(i * LAYER_CHUNK_SIZE);
        const to = from + BigInt(Math.min(LAYER_CHUNK_SIZE, layer.size - i * LAYER_CHUNK_SIZE));
        const n = Number(to - from);
        layer.copyTo(from, to, buf, 0);
        // The CRC covers the stored bytes, so damage is caught before any decompression.
        const data = await compressChunk(buf.subarray(0, n), compression);
        chunkTable.writeBigUInt64LE(BigInt(offset), i * 16);
        chunkTable.writeUInt32LE(data.length, i * 16 + 8);
        chunkTable.writeUInt32LE(crc32c(data), i * 16 + 12);
        if (native === undefined) await writeFully(file, [data], offset);
        else await nativeWrite(native, file.fd, offset, data, fsync);
        offset += data.length;
      }
    } finally {
      if (copyBuffers.length < MAX_COPY_BUFFERS) copyBuffers.push(buf);
    }
    // The tables are written from their columns, and the layer opened below keeps them: no
    // serialized copy, nothing read back or parsed again.
    const records = layer.records.compact();
    // (A table that was never pushed to is sorted, and may hold room reserved for rows.)
    const blocks = layer.blocks.sorted ? layer.blocks.compact() : layer.blocks.sortedCopy();
    const footer = Buffer.alloc(FOOTER);
    const recordParts = records.serializedParts();
    const blockParts = blocks.serializedParts();
    const recordAt = offset + chunkTable.length;
    const blockAt = recordAt + byteLength(recordParts);
    footer.writeBigUInt64LE(BigInt(offset), 0);
    footer.writeBigUInt64LE(BigInt(recordAt), 8);
    footer.writeBigUInt64LE(BigInt(blockAt), 16);
    let crc = crc32c(header);
    crc = crc32c(chunkTable, crc);
    for (const part of recordParts) crc = crc32c(part, crc);
    for (const part of blockParts) crc = crc32c(part, crc);
    crc = crc32c(footer.subarray(0, 24), crc);
    footer.writeUInt32LE(crc, 24);
    END_MAGIC.copy(footer, 28);
    const size = blockAt + byteLength(blockParts) + FOOTER;
    await writeFully(file, [chunkTable, ...recordParts, ...blockParts, footer], offset);
    token.throwIfCancelled();
    if (fsync) await file.sync();
    await file.close();
    closed = true;
    await rename(tmp, join(dir, name));
    if (fsync) await fsyncDir(dir);
    const opened = DiskLayer.fromWritten(join(dir, name), size, header, footer, {
      chunks: chunkTable,
      records,
      blocks,
    });
    return { name, size, layer: opened };
  } catch (error) {
    if (!closed) await file.close().catch(() => {});
    await rm(tmp, { force: true });
    throw error;
  }
}

/**
 * A layer file on disk, opened for reading. Opening verifies its structure and
 * metadata CRC and loads the record and block indexes; reading WAL bytes verifies
 * the CRC of every chunk read.
 *
 * @example
 * ```ts
 * import { DiskLayer } from "tideline/timeline";
 * // const layer = await DiskLayer.open("/data/timelines/main/layers/....layer");
 * // const bytes = await layer.read(layer.start, layer.end);
 * ```
 */
export class DiskLayer {
  readonly path: string;
  readonly start: Lsn;
  readonly end: Lsn;
  readonly meta: LayerMeta;
  readonly fileSize: number;
  readonly records: RecordTable;
  readonly blocks: BlockTable;
  readonly #chunks: Buffer;
  readonly #chunkSize: number;
  /** 0 none, 1 lz4, 2 zstd. */
  readonly #compression: number;

  private constructor(
    path: string,
    header: Buffer,
    fileSize: number,
    chunks: Buffer,
    records: RecordTable,
    blocks: BlockTable,
  ) {
    this.path = path;
    this.start = header.readBigUInt64LE(16);
    this.end = header.readBigUInt64LE(24);
    this.meta = {
      systemId: header.readBigUInt64LE(32),
      pgTimeline: header.readUInt32LE(40),
      pgVersion: header.readUInt32LE(44),
    };
    this.#chunkSize = header.readUInt32LE(60);
    this.#compression = header.readUInt32LE(12);
    this.fileSize = fileSize;
    this.#chunks = chunks;
    this.records = records;
    this.blocks = blocks;
  }

  /** How many WAL bytes it holds. */
  get size(): number {
    return Number(this.end - this.start);
  }

  /** Opens and verifies a layer file; throws {@linkcode LayerCorruptError} if it is damaged. */
  static async open(path: string): Promise<DiskLayer> {
    const file = await open(path, "r");
    try {
      const { size } = await file.stat();
      if (size < HEADER + FOOTER) throw new LayerCorruptError(path, `only ${size} bytes`);
      const header = Buffer.alloc(HEADER);
      await file.read(header, 0, HEADER, 0);
      const footer = Buffer.alloc(FOOTER);
      await file.read(footer, 0, FOOTER, size - FOOTER);
      const chunkAt = DiskLayer.#check(path, size, header, footer);
      const meta = Buffer.alloc(size - FOOTER - chunkAt);
      await file.read(meta, 0, meta.length, chunkAt);
      return DiskLayer.#parse(path, size, header, footer, meta);
    } finally {
      await file.close();
    }
  }

  /**
   * The layer file just written by {@linkcode writeLayerFile}, from what it wrote: the
   * header, the footer and the tables themselves (which the layer keeps: they must not
   * change). Checked as {@linkcode open} checks a file, except for the metadata CRC, which
   * the writer has just computed over these very tables; nothing is read back.
   */
  static fromWritten(
    path: string,
    size: number,
    header: Buffer,
    footer: Buffer,
    tables: { chunks: Buffer; records: RecordTable; blocks: BlockTable },
  ): DiskLayer {
    const chunkAt = DiskLayer.#check(path, size, header, footer);
    const { chunks, records, blocks } = tables;
    const sizes = DiskLayer.#sizes(path, size, header, footer);
    if (
      chunks.length !== sizes.chunks * 16 ||
      records.length !== sizes.records ||
      blocks.length !== sizes.blocks ||
      chunkAt +
        chunks.length +
        records.length * RecordTable.ROW_BYTES +
        blocks.length * BlockTable.ROW_BYTES !==
        size - FOOTER
    ) {
      throw new LayerCorruptError(path, "metadata size mismatch");
    }
    return DiskLayer.#make(path, size, header, chunks, records, blocks);
  }

  /** Checks the header and footer; returns where the metadata (chunk table on) begins. */
  static #check(path: string, size: number, header: Buffer, footer: Buffer): number {
    const bad = (detail: string) => new LayerCorruptError(path, detail);
    if (!header.subarray(0, 8).equals(MAGIC)) throw bad("bad magic (not a Tideline layer file)");
    const version = header.readUInt32LE(8);
    if (version !== FORMAT_VERSION)
      throw bad(`format version ${version}, expected ${FORMAT_VERSION}`);
    if (!footer.subarray(28).equals(END_MAGIC)) throw bad("no footer (torn write?)");
    const chunkAt = Number(footer.readBigUInt64LE(0));
    const recordAt = Number(footer.readBigUInt64LE(8));
    const blockAt = Number(footer.readBigUInt64LE(16));
    if (
      !(HEADER <= chunkAt && chunkAt <= recordAt && recordAt <= blockAt && blockAt <= size - FOOTER)
    ) {
      throw bad("impossible table offsets");
    }
    return chunkAt;
  }

  /** The table sizes the header gives, checked against where the footer puts the tables. */
  static #sizes(
    path: string,
    size: number,
    header: Buffer,
    footer: Buffer,
  ): { chunks: number; records: number; blocks: number } {
    const bad = (detail: string) => new LayerCorruptError(path, detail);
    const chunkAt = Number(footer.readBigUInt64LE(0));
    const recordAt = Number(footer.readBigUInt64LE(8));
    const blockAt = Number(footer.readBigUInt64LE(16));
    const records = header.readUInt32LE(48);
    const blocks = header.readUInt32LE(52);
    const chunks = header.readUInt32LE(56);
    if (recordAt - chunkAt !== chunks * 16) throw bad("chunk table size mismatch");
    if (blockAt - recordAt !== records * RecordTable.ROW_BYTES)
      throw bad("record table size mismatch");
    if (size - FOOTER - blockAt !== blocks * BlockTable.ROW_BYTES)
      throw bad("block table size mismatch");
    return { chunks, records, blocks };
  }

  /** Verifies the metadata CRC and the table sizes, and loads the tables. */
  static #parse(
    path: string,
    size: number,
    header: Buffer,
    footer: Buffer,
    meta: Buffer,
  ): DiskLayer {
    const chunkAt = Number(footer.readBigUInt64LE(0));
    const recordAt = Number(footer.readBigUInt64LE(8));
    const blockAt = Number(footer.readBigUInt64LE(16));
    let crc = crc32c(header);
    crc = crc32c(meta, crc);
    crc = crc32c(footer.subarray(0, 24), crc);
    if (crc !== footer.readUInt32LE(24)) throw new LayerCorruptError(path, "metadata CRC mismatch");
    const { chunks, records, blocks } = DiskLayer.#sizes(path, size, header, footer);
    return DiskLayer.#make(
      path,
      size,
      header,
      meta.subarray(0, chunks * 16),
      RecordTable.deserialize(meta.subarray(recordAt - chunkAt), records),
      BlockTable.deserialize(meta.subarray(blockAt - chunkAt), blocks),
    );
  }

  /** The layer, once its name is checked against the range it holds. */
  static #make(
    path: string,
    size: number,
    header: Buffer,
    chunks: Buffer,
    records: RecordTable,
    blocks: BlockTable,
  ): DiskLayer {
    const layer = new DiskLayer(path, header, size, chunks, records, blocks);
    const expectedName = layerFileName(layer.start, layer.end);
    if (basename(path) !== expectedName)
      throw new LayerCorruptError(path, `its range says it should be named ${expectedName}`);
    return layer;
  }

  /**
   * Reads WAL bytes `[from, to)` (within the layer), verifying each chunk's CRC.
   * Throws {@linkcode LayerCorruptError} on a mismatch.
   */
  async read(from: Lsn, to: Lsn): Promise<Buffer> {
    if (from < this.start || to > this.end || to < from) {
      throw new RangeError(`Range [${from}, ${to}) is outside layer ${basename(this.path)}`);
    }
    const out = Buffer.allocUnsafe(Number(to - from));
    if (out.length === 0) return out;
    const first = Math.floor(Number(from - this.start) / this.#chunkSize);
    const last = Math.floor((Number(to - this.start) - 1) / this.#chunkSize);
    const lz4 = this.#compression === 1 ? await loadLz4() : undefined;
    const file = await open(this.path, "r");
    try {
      let written = 0;
      for (let i = first; i <= last; i++) {
        const offset = Number(this.#chunks.readBigUInt64LE(i * 16));
        const storedLen = this.#chunks.readUInt32LE(i * 16 + 8);
        const stored = Buffer.allocUnsafe(storedLen);
        await file.read(stored, 0, storedLen, offset);
        if (crc32c(stored) !== this.#chunks.readUInt32LE(i * 16 + 12)) {
          throw new LayerCorruptError(
            this.path,
            `CRC mismatch in chunk ${i} (WAL from ${this.start + BigInt(i * this.#chunkSize)})`,
          );
        }
        const data = decompressChunk(stored, this.#compression, this.path, lz4);
        const rawLen = Math.min(this.#chunkSize, this.size - i * this.#chunkSize);
        if (data.length !== rawLen) {
          throw new LayerCorruptError(
            this.path,
            `chunk ${i} holds ${data.length} bytes, expected ${rawLen}`,
          );
        }
        const chunkStart = this.start + BigInt(i * this.#chunkSize);
        const a = from > chunkStart ? Number(from - chunkStart) : 0;
        const b = Math.min(rawLen, Number(to - chunkStart));
        data.copy(out, written, a, b);
        written += b - a;
      }
    } finally {
      await file.close();
    }
    return out;
  }
}
