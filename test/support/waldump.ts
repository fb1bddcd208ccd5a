/**
 * Parses `pg_waldump --bkp-details` output (PostgreSQL 15's format) for record-by-record
 * comparison with the decoder.
 *
 * @module
 */

/** One block reference as pg_waldump prints it. */
export interface DumpBlock {
  id: number;
  rel: string;
  fork: string;
  blk: number;
  fpw: boolean;
  /** False for "(FPW for WAL verification)". */
  apply: boolean;
  holeOffset?: number;
  holeLength?: number;
  compressionSaved?: number;
  method?: string;
}

/** One record line (and its block lines). */
export interface DumpRecord {
  rmgr: string;
  recLen: number;
  totLen: number;
  xid: number;
  lsn: string;
  prev: string;
  desc: string;
  blocks: DumpBlock[];
}

const RECORD =
  /^rmgr: (\S+)\s+len \(rec\/tot\):\s+(\d+)\/\s*(\d+), tx:\s+(\d+), lsn: ([0-9A-F]+\/[0-9A-F]+), prev ([0-9A-F]+\/[0-9A-F]+), desc: (.*)$/;
const BLOCK =
  /^\tblkref #(\d+): rel (\d+\/\d+\/\d+) fork (\w+) blk (\d+)(?: \(FPW( for WAL verification)?\); hole: offset: (\d+), length: (\d+)(?:, compression saved: (\d+), method: (\w+))?)?$/;

/** Parses pg_waldump's stdout. Throws on a block line it cannot read (format drift). */
export function parseWaldump(stdout: string): DumpRecord[] {
  const out: DumpRecord[] = [];
  for (const line of stdout.split("\n")) {
    const m = RECORD.exec(line);
    if (m) {
      out.push({
        rmgr: m[1]!,
        recLen: Number(m[2]),
        totLen: Number(m[3]),
        xid: Number(m[4]),
        lsn: m[5]!,
        prev: m[6]!,
        desc: m[7]!,
        blocks: [],
      });
      continue;
    }
    if (line.startsWith("\tblkref")) {
      const b = BLOCK.exec(line);
      const last = out[out.length - 1];
      if (!b || !last) throw new Error(`unparsed pg_waldump block line: ${JSON.stringify(line)}`);
      const blk: DumpBlock = {
        id: Number(b[1]),
        rel: b[2]!,
        fork: b[3]!,
        blk: Number(b[4]),
        fpw: b[6] !== undefined,
        apply: b[5] === undefined,
      };
      if (b[6] !== undefined) {
        blk.holeOffset = Number(b[6]);
        blk.holeLength = Number(b[7]);
      }
      if (b[8] !== undefined) {
        blk.compressionSaved = Number(b[8]);
        blk.method = b[9]!;
      }
      last.blocks.push(blk);
    }
  }
  return out;
}

/** PostgreSQL 15's resource manager names by id, as pg_waldump prints them. */
export const RMGR_NAMES_15 = [
  "XLOG",
  "Transaction",
  "Storage",
  "CLOG",
  "Database",
  "Tablespace",
  "MultiXact",
  "RelMap",
  "Standby",
  "Heap2",
  "Heap",
  "Btree",
  "Hash",
  "Gin",
  "Gist",
  "Sequence",
  "SPGist",
  "BRIN",
  "CommitTs",
  "ReplicationOrigin",
  "Generic",
  "LogicalMessage",
];
