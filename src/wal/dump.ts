/**
 * Rendering decoded records the way `pg_waldump` does (text lines and `--stats`
 * tables), and as the JSON objects that `tideline waldump --json` and the HTTP API
 * emit.
 *
 * @module
 */
import { formatLsn, formatLsnPadded, type Lsn } from "./lsn.js";
import type { WalRecord } from "./record.js";
import { recordTypeName, rmgrName, rmgrs } from "./rmgr/index.js";
import type { SupportedVersion } from "./rmgr/versions.js";

const FORKS = ["main", "fsm", "vm", "init"] as const;

/** Fork name as PostgreSQL prints it. */
function forkName(fork: number): string {
  return FORKS[fork] ?? `fork${fork}`;
}

/** One block reference in {@linkcode DumpRecordJson}. */
export interface DumpBlockJson {
  id: number;
  /** `spc/db/rel`. */
  rel: string;
  fork: string;
  blk: number;
  /** Whether the record carries a full-page image of the block. */
  fpw: boolean;
}

/** A record as `tideline waldump --json` prints it (one object per line). */
export interface DumpRecordJson {
  lsn: string;
  end: string;
  prev: string;
  rmgr: string;
  type: string;
  xid: number;
  /** `pg_waldump`'s `len (rec/tot)`: bytes without full-page images. */
  recLen: number;
  totLen: number;
  /** Bytes of stored full-page images. */
  fpiLen: number;
  blocks: DumpBlockJson[];
}

/**
 * The JSON form of a decoded record.
 *
 * @example
 * ```ts
 * import { recordToJson, WalDecoder, parseLsn } from "tideline/wal";
 * const dec = new WalDecoder({ startLsn: parseLsn("0/1000000") });
 * // ... push bytes ...
 * const rec = dec.next();
 * if (rec) console.log(JSON.stringify(recordToJson(rec, 15)));
 * ```
 */
export function recordToJson(rec: WalRecord, version: SupportedVersion): DumpRecordJson {
  const blocks: DumpBlockJson[] = [];
  for (const b of rec.blocks) {
    blocks.push({
      id: b.id,
      rel: `${b.spc}/${b.db}/${b.rel}`,
      fork: forkName(b.fork),
      blk: b.blk,
      fpw: b.hasImage,
    });
  }
  return {
    lsn: formatLsn(rec.lsn),
    end: formatLsn(rec.end),
    prev: formatLsn(rec.prev),
    rmgr: rmgrName(version, rec.rmid),
    type: recordTypeName(version, rec.rmid, rec.info),
    xid: rec.xid,
    recLen: rec.recLen,
    totLen: rec.totLen,
    fpiLen: rec.fpiLen,
    blocks,
  };
}

/**
 * One line in `pg_waldump`'s shape: `rmgr: Heap len (rec/tot): 59/ 59, tx: 735, lsn:
 * 0/01557C28, prev 0/01557BF0, desc: INSERT , blkref #0: rel 1663/5/16384 blk 0`.
 * The `desc:` part names the record type and its block references; the per-type
 * details that pg_waldump's rmgr `desc` functions add are not printed.
 *
 * @example
 * ```ts
 * import { formatRecordLine } from "tideline/wal";
 * // for each decoded record `rec` of a PostgreSQL 15 cluster:
 * // console.log(formatRecordLine(rec, 15));
 * ```
 */
export function formatRecordLine(rec: WalRecord, version: SupportedVersion): string {
  let line =
    `rmgr: ${rmgrName(version, rec.rmid).padEnd(11)} ` +
    `len (rec/tot): ${String(rec.recLen).padStart(6)}/${String(rec.totLen).padStart(6)}, ` +
    `tx: ${String(rec.xid).padStart(10)}, ` +
    `lsn: ${formatLsnPadded(rec.lsn)}, prev ${formatLsnPadded(rec.prev)}, ` +
    `desc: ${recordTypeName(version, rec.rmid, rec.info)} `;
  for (const b of rec.blocks) {
    const fork = b.fork === 0 ? "" : ` fork ${forkName(b.fork)}`;
    line += `, blkref #${b.id}: rel ${b.spc}/${b.db}/${b.rel}${fork} blk ${b.blk}`;
    if (b.hasImage) line += b.applyImage ? " FPW" : " FPW for WAL verification";
  }
  return line;
}

/** Counts of one resource manager in {@linkcode WalStats}. */
export interface RmgrStatsJson {
  count: number;
  recordBytes: number;
  fpiBytes: number;
  combinedBytes: number;
}

/**
 * Per-resource-manager record counts and sizes, the numbers of `pg_waldump --stats`.
 *
 * @example
 * ```ts
 * import { WalStats } from "tideline/wal";
 * const stats = new WalStats(15);
 * // for each decoded record: stats.add(rec);
 * console.log(stats.formatText());
 * ```
 */
export class WalStats {
  readonly version: SupportedVersion;
  /** Records seen. */
  count = 0;
  /** The first record's LSN. */
  startLsn: Lsn | undefined;
  /** The last record's end. */
  endLsn: Lsn | undefined;
  readonly #count: number[] = new Array(256).fill(0);
  readonly #rec: number[] = new Array(256).fill(0);
  readonly #fpi: number[] = new Array(256).fill(0);

  constructor(version: SupportedVersion) {
    this.version = version;
  }

  /** Counts one record. */
  add(rec: WalRecord): void {
    if (this.startLsn === undefined) this.startLsn = rec.lsn;
    this.endLsn = rec.end;
    this.count++;
    const id = rec.rmid;
    this.#count[id]!++;
    this.#rec[id]! += rec.recLen;
    this.#fpi[id]! += rec.fpiLen;
  }

  /**
   * Adds counts gathered elsewhere (another thread, another stretch of WAL) to resource
   * manager `rmid`; `count`, `startLsn` and `endLsn` are the caller's to set.
   *
   * @example
   * ```ts
   * import { WalStats } from "tideline/wal";
   * const stats = new WalStats(15);
   * stats.addCounts(10, 3, 180, 0); // three Heap records of 180 bytes in all
   * ```
   */
  addCounts(rmid: number, count: number, recordBytes: number, fpiBytes: number): void {
    this.#count[rmid]! += count;
    this.#rec[rmid]! += recordBytes;
    this.#fpi[rmid]! += fpiBytes;
  }

  /** The rows pg_waldump prints: every built-in rmgr, custom ones only when seen. */
  #rows(): { name: string; id: number }[] {
    const rows = rmgrs(this.version).map((r) => ({ name: r.name, id: r.id }));
    const builtin = new Set(rows.map((r) => r.id));
    for (let id = 0; id < 256; id++) {
      if (!builtin.has(id) && this.#count[id]! > 0)
        rows.push({ name: rmgrName(this.version, id), id });
    }
    return rows;
  }

  /**
   * `{"rmgrs":{"Heap":{count,recordBytes,fpiBytes,combinedBytes},...},"total":{...}}`.
   *
   * @example
   * ```ts
   * import { WalStats } from "tideline/wal";
   * console.log(JSON.stringify(new WalStats(16).toJson().total)); // {"count":0,...}
   * ```
   */
  toJson(): { rmgrs: Record<string, RmgrStatsJson>; total: RmgrStatsJson } {
    const out: Record<string, RmgrStatsJson> = {};
    const total: RmgrStatsJson = { count: 0, recordBytes: 0, fpiBytes: 0, combinedBytes: 0 };
    for (const { name, id } of this.#rows()) {
      const row = {
        count: this.#count[id]!,
        recordBytes: this.#rec[id]!,
        fpiBytes: this.#fpi[id]!,
        combinedBytes: this.#rec[id]! + this.#fpi[id]!,
      };
      out[name] = row;
      total.count += row.count;
      total.recordBytes += row.recordBytes;
      total.fpiBytes += row.fpiBytes;
      total.combinedBytes += row.combinedBytes;
    }
    return { rmgrs: out, total };
  }

  /**
   * The table `pg_waldump --stats` prints, column for column.
   *
   * @example
   * ```ts
   * import { WalStats } from "tideline/wal";
   * console.log(new WalStats(15).formatText()); // "" until a record was added
   * ```
   */
  formatText(): string {
    if (this.startLsn === undefined || this.endLsn === undefined) return "";
    const { rmgrs: rows, total } = this.toJson();
    const pct = (n: number, d: number) => (d === 0 ? 0 : (100 * n) / d).toFixed(2).padStart(6);
    const lines: string[] = [];
    lines.push(`WAL statistics between ${formatLsn(this.startLsn)} and ${formatLsn(this.endLsn)}:`);
    const head = (a: string[]) =>
      `${a[0]!.padEnd(27)} ${a
        .slice(1)
        .map((s, i) => (i % 2 === 0 ? s.padStart(20) : s.padStart(8)))
        .join(" ")}`;
    lines.push(
      head(["Type", "N", "(%)", "Record size", "(%)", "FPI size", "(%)", "Combined size", "(%)"]),
    );
    lines.push(
      head(["----", "-", "---", "-----------", "---", "--------", "---", "-------------", "---"]),
    );
    for (const [name, r] of Object.entries(rows)) {
      lines.push(
        `${name.padEnd(27)} ` +
          `${String(r.count).padStart(20)} (${pct(r.count, total.count)}) ` +
          `${String(r.recordBytes).padStart(20)} (${pct(r.recordBytes, total.recordBytes)}) ` +
          `${String(r.fpiBytes).padStart(20)} (${pct(r.fpiBytes, total.fpiBytes)}) ` +
          `${String(r.combinedBytes).padStart(20)} (${pct(r.combinedBytes, total.combinedBytes)})`,
      );
    }
    lines.push(
      `${"".padEnd(27)} ${"--------".padStart(20)} ${"".padStart(8)} ${"--------".padStart(20)} ${"".padStart(8)} ${"--------".padStart(20)} ${"".padStart(8)} ${"--------".padStart(20)}`,
    );
    const share = (n: number) =>
      `[${(total.combinedBytes === 0 ? 0 : (100 * n) / total.combinedBytes).toFixed(2)}%]`;
    lines.push(
      `${"Total".padEnd(27)} ` +
        `${String(this.count).padStart(20)} ${"".padEnd(9)}` +
        `${String(total.recordBytes).padStart(20)} ${share(total.recordBytes).padEnd(9)}` +
        `${String(total.fpiBytes).padStart(20)} ${share(total.fpiBytes).padEnd(9)}` +
        `${String(total.combinedBytes).padStart(20)} ${"[100%]".padEnd(6)}`,
    );
    return `${lines.join("\n")}\n`;
  }
}
