/**
 * The decoder against real PostgreSQL 15 WAL: record-for-record parity with pg_waldump on
 * varied workloads, random chunking, and corruption of real segments.
 */
import assert from "node:assert/strict";
import {
  chownSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  formatLsn,
  formatLsnPadded,
  newRecordTally,
  parseLsn,
  parseSegmentFileName,
  readWithRecordCrcs,
  segmentFileName,
  segmentStartLsn,
  WalCrcMismatchError,
  WalDecodeError,
  WalDecoder,
  WalPageHeaderError,
  type WalRecord,
  WalRecordLengthError,
} from "../../src/wal/index.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";
import { fixCrc as fixRecordCrc } from "../support/walbuilder.js";
import { type DumpRecord, parseWaldump, RMGR_NAMES_15 } from "../support/waldump.js";

/** Recomputes the CRC of the record at `at` after the changes made by the other arguments. */
function fixCrc(b: Buffer, at: number, ..._changes: unknown[]): void {
  fixRecordCrc(b, at);
}

const MiB = 1024 * 1024;

interface Wal {
  cluster: Cluster;
  files: string[];
  segmentSize: number;
  startLsn: bigint;
  bytes: Buffer;
  dump: DumpRecord[];
  dumpError: string;
}

/** Stops the server (so pg_wal is final), reads every segment and runs pg_waldump on them. */
async function collect(cluster: Cluster): Promise<Wal> {
  await cluster.stopServer();
  const files = cluster.segmentFiles();
  const segmentSize = cluster.segmentSize;
  const first = parseSegmentFileName(files[0]!, segmentSize)!;
  files.forEach((f, i) => {
    assert.equal(
      f,
      segmentFileName(1, first.segno + BigInt(i), segmentSize),
      "contiguous segments",
    );
  });
  const bytes = Buffer.concat(files.map((f) => readFileSync(join(cluster.walDir, f))));
  assert.equal(bytes.length, files.length * segmentSize);
  const r = cluster.waldump(["--bkp-details", "-p", ".", files[0]!, files[files.length - 1]!]);
  return {
    cluster,
    files,
    segmentSize,
    startLsn: segmentStartLsn(first.segno, segmentSize),
    bytes,
    dump: parseWaldump(r.stdout),
    dumpError: r.stderr,
  };
}

/** Decodes `bytes` in one go; returns detached records and the error that stopped it. */
function decodeAll(wal: Wal, bytes = wal.bytes, sizes?: number[], nativeCrc = true) {
  const dec = new WalDecoder({ startLsn: wal.startLsn, segmentSize: wal.segmentSize, nativeCrc });
  const records: string[] = [];
  const infos: WalRecord[] = [];
  let error: WalDecodeError | undefined;
  const drain = () => {
    for (const r of dec.records()) {
      records.push(signature(r));
      if (sizes === undefined) infos.push(r.detach());
    }
  };
  try {
    if (sizes === undefined) dec.push(bytes);
    else {
      let i = 0;
      let k = 0;
      while (i < bytes.length) {
        const n = sizes[k++ % sizes.length]!;
        dec.push(bytes.subarray(i, i + n));
        i += n;
        drain();
      }
    }
    dec.end();
    drain();
  } catch (e) {
    if (!(e instanceof WalDecodeError)) throw e;
    error = e;
  }
  return { records, infos, error, dec };
}

/**
 * Counts records the way `waldump --stats` does: `tally()` where it can, `next()` for the rest
 * (or `next()` only, with `useTally` false), pushing `bytes` in pieces of `sizes`. Returns what
 * was counted, the error that stopped it and where the decoder stood.
 */
function tallyAll(
  wal: Wal,
  bytes: Buffer,
  options: { sizes?: number[]; useTally?: boolean; nativeCrc?: boolean; before?: bigint } = {},
) {
  const { sizes = [bytes.length], useTally = true, nativeCrc = true, before } = options;
  const dec = new WalDecoder({
    startLsn: wal.startLsn,
    segmentSize: wal.segmentSize,
    nativeCrc,
    decodeBlocks: false,
  });
  const t = newRecordTally();
  let tallied = 0;
  let stoppedAt: bigint | undefined;
  let error: string | undefined;
  const drain = (): boolean => {
    for (;;) {
      if (useTally && t.records > 0) tallied += dec.tally(t, before);
      const r = dec.next();
      if (r === undefined) return true;
      if (before !== undefined && r.lsn >= before) {
        stoppedAt = r.lsn;
        return false;
      }
      t.sums[r.rmid]!++;
      t.sums[256 + r.rmid]! += r.totLen - r.fpiLen;
      t.sums[512 + r.rmid]! += r.fpiLen;
      t.records++;
      t.endHi = r.endHi;
      t.endLo = r.endLo;
    }
  };
  try {
    let i = 0;
    let k = 0;
    let more = true;
    while (more && i < bytes.length) {
      const n = sizes[k++ % sizes.length]!;
      dec.push(bytes.subarray(i, i + n));
      i += n;
      more = drain();
    }
    if (more) {
      dec.end();
      drain();
    }
  } catch (e) {
    if (!(e instanceof WalDecodeError)) throw e;
    error = `${e.code} at ${formatLsn(e.lsn)}: ${e.message}`;
  }
  return {
    counted: {
      records: t.records,
      sums: Array.from(t.sums),
      end: t.endHi < 0 ? undefined : formatLsn((BigInt(t.endHi) << 32n) | BigInt(t.endLo)),
      stoppedAt,
      error,
      position: formatLsn(dec.position),
      decodedUpTo: dec.decodedUpTo,
    },
    tallied,
  };
}

function signature(r: WalRecord): string {
  const blocks = r.blocks
    .map(
      (b) =>
        `${b.id}:${b.spc}/${b.db}/${b.rel}:${b.fork}:${b.blk}:${b.dataLen}:${b.imageLen}:${b.bimgInfo}`,
    )
    .join(",");
  return `${formatLsn(r.lsn)} ${formatLsn(r.end)} ${formatLsn(r.prev)} ${r.rmid} ${r.info} ${r.xid} ${r.totLen} ${r.crc} ${r.mainDataLen} ${blocks}`;
}

/** Compares decoded records with pg_waldump's, field by field. */
function compareWithWaldump(wal: Wal, records: WalRecord[]): void {
  assert.ok(wal.dump.length > 100, `pg_waldump printed ${wal.dump.length} records`);
  assert.equal(records.length, wal.dump.length, "record count");
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const d = wal.dump[i]!;
    const where = `record ${i} at ${d.lsn}`;
    assert.equal(formatLsnPadded(r.lsn), d.lsn, where);
    assert.equal(formatLsnPadded(r.prev), d.prev, where);
    assert.equal(RMGR_NAMES_15[r.rmid], d.rmgr, where);
    assert.equal(r.xid, d.xid, where);
    assert.equal(r.recLen, d.recLen, where);
    assert.equal(r.totLen, d.totLen, where);
    assert.equal(r.blocks.length, d.blocks.length, `${where}: block count`);
    r.blocks.forEach((b, j) => {
      const db = d.blocks[j]!;
      const w = `${where} block ${j}`;
      assert.equal(b.id, db.id, w);
      assert.equal(`${b.spc}/${b.db}/${b.rel}`, db.rel, w);
      assert.equal(b.forkName, db.fork, w);
      assert.equal(b.blk, db.blk, w);
      assert.equal(b.hasImage, db.fpw, w);
      if (b.hasImage) {
        assert.equal(b.applyImage, db.apply, w);
        assert.equal(b.holeOffset, db.holeOffset, w);
        assert.equal(b.holeLength, db.holeLength, w);
        if (db.method !== undefined) {
          assert.equal(b.compression, db.method, w);
          assert.equal(b.imageLen, 8192 - b.holeLength - db.compressionSaved!, w);
        } else {
          assert.equal(b.compression, "none", w);
          assert.equal(b.imageLen, 8192 - b.holeLength, w);
        }
      }
    });
  }
}

/** Where pg_waldump stopped: "error in WAL record at X: <reason>". */
function waldumpStop(wal: Wal): string | undefined {
  return /invalid record length at ([0-9A-F]+\/[0-9A-F]+)/.exec(wal.dumpError)?.[1];
}

const VARIED = (tsDir: string) => `
CREATE TABLESPACE ts LOCATION '${tsDir}';
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE t (id serial PRIMARY KEY, v text, n int, arr int[], pt point, r int4range);
INSERT INTO t (v, n, arr, pt, r)
  SELECT md5(g::text), g % 97, ARRAY[g % 7, g % 11, g], point(g % 100, g / 100), int4range(g, g + 10)
  FROM generate_series(1, 3000) g;
CREATE INDEX t_hash ON t USING hash (n);
CREATE INDEX t_gin ON t USING gin (arr);
CREATE INDEX t_gist ON t USING gist (pt);
CREATE INDEX t_gist_r ON t USING gist (r);
CREATE INDEX t_brin ON t USING brin (n);
CREATE INDEX t_spgist ON t USING spgist (pt);
CREATE TABLE toasty (id int, big text) TABLESPACE ts;
INSERT INTO toasty SELECT g, (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400)) FROM generate_series(1, 40) g;
UPDATE t SET v = v || 'x' WHERE id % 5 = 0;
DELETE FROM t WHERE id % 7 = 0;
VACUUM t;
VACUUM FULL toasty;
CREATE SEQUENCE s;
SELECT count(nextval('s')) FROM generate_series(1, 100);
BEGIN;
INSERT INTO t (v) VALUES ('sub0');
SAVEPOINT a;
INSERT INTO t (v) VALUES ('sub1');
SAVEPOINT b;
INSERT INTO t (v) VALUES ('sub2');
ROLLBACK TO a;
INSERT INTO t (v) VALUES ('sub3');
COMMIT;
DO $$ BEGIN FOR i IN 1..80 LOOP BEGIN INSERT INTO t (v, n) VALUES ('loop', i); EXCEPTION WHEN others THEN NULL; END; END LOOP; END $$;
BEGIN;
INSERT INTO t (v) VALUES ('2pc');
PREPARE TRANSACTION 'p1';
COMMIT PREPARED 'p1';
BEGIN;
INSERT INTO t (v) VALUES ('2pc-abort');
PREPARE TRANSACTION 'p2';
ROLLBACK PREPARED 'p2';
CREATE UNLOGGED TABLE u (a int PRIMARY KEY, b text);
INSERT INTO u SELECT g, md5(g::text) FROM generate_series(1, 500) g;
SELECT pg_logical_emit_message(true, 'tideline', 'hello');
SELECT pg_logical_emit_message(false, 'tideline', repeat('x', 20000));
CHECKPOINT;
UPDATE t SET n = n + 1 WHERE id % 50 = 0;
CREATE DATABASE db2;
CREATE DATABASE db3 STRATEGY FILE_COPY;
DROP DATABASE db3;
SELECT pg_switch_wal();
INSERT INTO t (v) VALUES ('after switch');
`;

describe("WAL decoder against PostgreSQL 15", {
  skip: !HAVE_PG15 && "PostgreSQL 15 not installed",
}, () => {
  let varied: Wal;
  let compressed: Wal;
  const clusters: Cluster[] = [];

  before(async () => {
    const [a, b] = await Promise.all([
      startCluster({
        walSegmentSizeMiB: 1,
        settings: {
          wal_level: "logical",
          max_prepared_transactions: 4,
          wal_keep_size: "1GB",
          track_commit_timestamp: true,
        },
      }),
      startCluster({ settings: { wal_keep_size: "1GB", full_page_writes: true } }),
    ]);
    clusters.push(a, b);
    const tsDir = join(a.dir, "ts");
    mkdirSync(tsDir);
    if (process.getuid?.() === 0) {
      const st = (await import("node:fs")).statSync(a.dir);
      chownSync(tsDir, st.uid, st.gid);
    }
    await Promise.all([
      (async () => {
        await a.pgbench(["-i", "-q", "-s", "1"]);
        await a.pgbench(["-c", "2", "-t", "300", "-n"]);
        await a.sql(VARIED(tsDir));
      })(),
      (async () => {
        await b.sql(`
          CREATE TABLE c (id int PRIMARY KEY, v text);
          INSERT INTO c SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 20000) g;
          SET wal_compression = 'pglz'; CHECKPOINT; UPDATE c SET v = v || 'a' WHERE id % 40 = 0;
          SET wal_compression = 'lz4'; CHECKPOINT; UPDATE c SET v = v || 'b' WHERE id % 40 = 1;
          SET wal_compression = 'zstd'; CHECKPOINT; UPDATE c SET v = v || 'c' WHERE id % 40 = 2;
          SET wal_compression = 'off'; SET wal_consistency_checking = 'heap,btree';
          UPDATE c SET v = v || 'd' WHERE id % 400 = 3;
          RESET wal_consistency_checking;
          SELECT pg_switch_wal();
          INSERT INTO c VALUES (0, 'last');
        `);
      })(),
    ]);
    [varied, compressed] = await Promise.all([collect(a), collect(b)]);
  });

  after(async () => {
    await Promise.all(clusters.map((c) => c.stop()));
  });

  it("matches pg_waldump record for record on a varied workload (1 MiB segments)", (t) => {
    const { infos, error } = decodeAll(varied);
    compareWithWaldump(varied, infos);
    t.diagnostic(`${infos.length} records in ${varied.files.length} segments of 1 MiB`);
    const rmgrs = new Set(infos.map((r) => RMGR_NAMES_15[r.rmid]));
    for (const name of [
      "Heap",
      "Heap2",
      "Btree",
      "Hash",
      "Gin",
      "Gist",
      "SPGist",
      "BRIN",
      "Sequence",
      "Transaction",
      "Database",
      "Tablespace",
      "LogicalMessage",
      "Standby",
      "XLOG",
      "Storage",
      "CommitTs",
    ]) {
      assert.ok(rmgrs.has(name), `workload produced ${name} records`);
    }
    assert.ok(
      infos.some((r) => r.toplevelXid !== undefined),
      "a record with a top-level xid",
    );
    assert.ok(
      infos.some((r) => r.rmid === 0 && r.rmgrInfo === 0x40),
      "an XLOG_SWITCH",
    );
    assert.ok(
      infos.some((r) => r.totLen > 8192),
      "a record spanning pages",
    );
    assert.ok(
      infos.some((r) => r.lsn / BigInt(MiB) !== (r.lsn + BigInt(r.totLen)) / BigInt(MiB)),
      "a record spanning segments",
    );
    // Both stop at the same place for the same reason.
    assert.ok(error?.endOfWal, String(error));
    assert.equal(formatLsn(error!.lsn), waldumpStop(varied));
  });

  it("matches pg_waldump with compressed and consistency-check images (pglz, lz4, zstd)", (t) => {
    const { infos, error } = decodeAll(compressed);
    compareWithWaldump(compressed, infos);
    t.diagnostic(`${infos.length} records in ${compressed.files.length} segments of 16 MiB`);
    const methods = new Set(
      infos.flatMap((r) => r.blocks.filter((b) => b.hasImage).map((b) => b.compression)),
    );
    assert.deepEqual([...methods].sort(), ["lz4", "none", "pglz", "zstd"]);
    assert.ok(
      infos.some((r) => r.blocks.some((b) => b.hasImage && !b.applyImage)),
      "an image for WAL verification only",
    );
    assert.ok(error instanceof WalRecordLengthError && error.endOfWal, String(error));
    assert.equal(formatLsn(error.lsn), waldumpStop(compressed));
  });

  it("gives identical records for random chunkings of real WAL", () => {
    const reference = decodeAll(varied).records;
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            { weight: 1, arbitrary: fc.integer({ min: 1, max: 100 }) },
            { weight: 2, arbitrary: fc.integer({ min: 101, max: 16 * 1024 }) },
            { weight: 4, arbitrary: fc.integer({ min: 16 * 1024, max: 200 * 1024 }) },
          ),
          { minLength: 1, maxLength: 50 },
        ),
        (sizes) => {
          assert.deepEqual(decodeAll(varied, varied.bytes, sizes).records, reference);
        },
      ),
      { numRuns: 8, seed: 15 },
    );
    // Replication-like: 128 KiB messages cut at page boundaries, and tiny pieces over 2 MiB.
    assert.deepEqual(decodeAll(varied, varied.bytes, [128 * 1024]).records, reference);
    const k = reference.findIndex(
      (s) => parseLsn(s.split(" ")[1]!) > varied.startLsn + 2n * BigInt(MiB),
    );
    const cut = Number(parseLsn(reference[k]!.split(" ")[0]!) - varied.startLsn);
    assert.deepEqual(
      decodeAll(varied, varied.bytes.subarray(0, cut), [1, 7, 3, 64, 13]).records,
      reference.slice(0, k),
    );
  });

  it("resumes at any record boundary like a replication restart", () => {
    const { infos } = decodeAll(varied);
    for (const i of [1, 17, Math.floor(infos.length / 3), infos.length - 5]) {
      const lsn = infos[i]!.lsn;
      const dec = new WalDecoder({ startLsn: lsn, segmentSize: varied.segmentSize });
      dec.push(varied.bytes.subarray(Number(lsn - varied.startLsn)));
      const got: string[] = [];
      try {
        for (const r of dec) got.push(signature(r));
      } catch (e) {
        assert.ok(e instanceof WalDecodeError && e.endOfWal);
      }
      assert.deepEqual(got, infos.slice(i).map(signature));
    }
  });

  it("starts at segment starts, skipping a continued record as pg_waldump does", (t) => {
    const { infos } = decodeAll(varied);
    let continued = 0;
    for (let seg = 1; seg < varied.files.length; seg++) {
      const segLsn = varied.startLsn + BigInt(seg * varied.segmentSize);
      const dec = new WalDecoder({ startLsn: segLsn });
      dec.push(varied.bytes.subarray(seg * varied.segmentSize));
      const got: string[] = [];
      try {
        for (const r of dec) got.push(signature(r));
      } catch (e) {
        assert.ok(e instanceof WalDecodeError && e.endOfWal);
      }
      const expected = infos.filter((r) => r.lsn >= segLsn).map(signature);
      assert.deepEqual(got, expected, `from ${formatLsn(segLsn)}`);
      if (dec.skippedBytes > 0) continued++;
    }
    t.diagnostic(
      `${continued} of ${varied.files.length - 1} segments start with a continued record`,
    );
  });

  it("reports corruption of real WAL with typed errors naming the LSN", () => {
    const { infos } = decodeAll(varied);
    const target = infos.find(
      (r, i) => i > 200 && r.totLen > 100 && (r.lsn % 8192n) + BigInt(r.totLen) < 8192n,
    )!;
    const at = Number(target.lsn - varied.startLsn);
    const idx = infos.indexOf(target);

    const flipped = Buffer.from(varied.bytes);
    flipped[at + 60]! ^= 0x04;
    const crc = decodeAll(varied, flipped);
    assert.ok(crc.error instanceof WalCrcMismatchError);
    assert.equal(crc.error.lsn, target.lsn);
    assert.equal(crc.error.endOfWal, false);
    assert.match(crc.error.message, new RegExp(`record at ${formatLsn(target.lsn)}`));
    assert.equal(crc.records.length, idx);
    // The same without the native batch CRC.
    const crcJs = decodeAll(varied, flipped, undefined, false);
    assert.ok(crcJs.error instanceof WalCrcMismatchError);
    assert.equal(crcJs.error.message, crc.error.message);
    assert.deepEqual(crcJs.records, crc.records);
    // And in a long record (native even one at a time), in odd-sized chunks.
    const long = infos.find(
      (r, i) => i > 200 && r.totLen > 2000 && (r.lsn % 8192n) + BigInt(r.totLen) < 8192n,
    );
    if (long !== undefined) {
      const flippedLong = Buffer.from(varied.bytes);
      flippedLong[Number(long.lsn - varied.startLsn) + 1500]! ^= 0x80;
      for (const native of [true, false]) {
        const r = decodeAll(varied, flippedLong, [7919, 65536, 131], native);
        assert.ok(r.error instanceof WalCrcMismatchError, `native ${native}`);
        assert.equal(r.error.lsn, long.lsn);
        assert.equal(r.records.length, infos.indexOf(long));
      }
    }

    const truncated = decodeAll(varied, varied.bytes.subarray(0, at + 50));
    assert.equal(truncated.error?.code, "truncated");
    assert.equal(truncated.error?.endOfWal, true);
    assert.equal(truncated.error?.recordLsn, target.lsn);
    assert.equal(truncated.records.length, idx);

    const page = (target.lsn / 8192n) * 8192n;
    const po = Number(page - varied.startLsn);
    const magic = Buffer.from(varied.bytes);
    magic.writeUInt16LE(0xd113, po);
    const m = decodeAll(varied, magic);
    assert.ok(m.error instanceof WalPageHeaderError);
    assert.equal(m.error.code, "bad-magic");
    assert.equal(m.error.lsn, page);
    assert.match(m.error.message, new RegExp(`invalid magic number D113 .*LSN ${formatLsn(page)}`));

    const addr = Buffer.from(varied.bytes);
    addr.writeBigUInt64LE(page + 8192n, po + 8);
    const a = decodeAll(varied, addr);
    assert.equal(a.error?.code, "page-address");
    assert.equal(a.error?.lsn, page);

    const huge = Buffer.from(varied.bytes);
    huge.writeUInt32LE(0x4000_0000, at);
    const h = decodeAll(varied, huge);
    assert.ok(h.error instanceof WalRecordLengthError);
    assert.equal(h.error.lsn, target.lsn);
    assert.equal(h.error.totalLength, 0x4000_0000);
  });

  it("follows PostgreSQL over a record abandoned by crash recovery (OVERWRITE_CONTRECORD)", async (t) => {
    // As PostgreSQL's own test does: a large record crosses into the next segment, the server
    // crashes, that segment is lost; recovery ends at the partial record and writes an
    // XLOG_OVERWRITE_CONTRECORD on a page flagged FIRST_IS_OVERWRITE_CONTRECORD.
    const c = await startCluster({ walSegmentSizeMiB: 1, settings: { wal_keep_size: "1GB" } });
    clusters.push(c);
    await c.sql(`
      CREATE TABLE filler (a int, b text);
      DO $$
      DECLARE remain int;
      BEGIN
        LOOP
          INSERT INTO filler SELECT g, repeat(md5(g::text), (g % 60) + 1) FROM generate_series(1, 10) g;
          remain := 1048576 - (pg_current_wal_insert_lsn() - '0/0') % 1048576;
          EXIT WHEN remain < 2 * 8192;
        END LOOP;
      END $$;
    `);
    const init = await c.sql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())");
    await c.sql("SELECT pg_logical_emit_message(true, 'tideline', repeat('xyzxz', 100000))");
    const endFile = await c.sql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())");
    assert.notEqual(init, endFile);
    await c.run("pg_ctl", ["-D", c.dataDir, "-m", "immediate", "-w", "stop"]);
    rmSync(join(c.walDir, endFile));
    await c.run("pg_ctl", ["-D", c.dataDir, "-l", join(c.dir, "server.log"), "-w", "start"]);
    await c.sql("CREATE TABLE after_crash (a text); INSERT INTO after_crash VALUES ('hello')");
    await c.switchWal();
    const wal = await collect(c);
    const { infos, error, dec } = decodeAll(wal);
    compareWithWaldump(wal, infos);
    assert.ok(error?.endOfWal, String(error));
    assert.equal(dec.abandonedRecords.length, 1);
    const lost = dec.abandonedRecords[0]!;
    const ow = infos.find((r) => r.rmid === 0 && r.rmgrInfo === 0xd0);
    assert.ok(ow, "an XLOG_OVERWRITE_CONTRECORD record");
    assert.equal(ow.mainData().readBigUInt64LE(0), lost);
    assert.equal(formatLsn(ow.lsn % BigInt(MiB)), "0/28", "it starts the lost segment");
    assert.ok(!infos.some((r) => r.lsn === lost));
    t.diagnostic(`abandoned ${formatLsn(lost)}, overwritten at ${formatLsn(ow.lsn)}`);
  });

  it("counts with tally() exactly what next() returns, in any chunking (fast-check)", (t) => {
    const reference = tallyAll(varied, varied.bytes, { useTally: false }).counted;
    assert.ok(reference.records > 1000 && reference.error?.includes("invalid record length"));
    const whole = tallyAll(varied, varied.bytes);
    assert.deepEqual(whole.counted, reference);
    // Most records are taken by tally(): the test would pass vacuously otherwise.
    assert.ok(whole.tallied > reference.records * 0.8, `${whole.tallied} of ${reference.records}`);
    t.diagnostic(`${whole.tallied} of ${reference.records} records counted by tally()`);
    // Without the native batch CRC the same.
    assert.deepEqual(tallyAll(varied, varied.bytes, { nativeCrc: false }).counted, reference);
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            // Multiples of 8 keep chunks word-aligned (tally reads words); others are not.
            fc.integer({ min: 1, max: 8192 }).map((n) => n * 8),
            fc.integer({ min: 1, max: 70000 }),
          ),
          { minLength: 1, maxLength: 20 },
        ),
        (sizes) => {
          assert.deepEqual(tallyAll(varied, varied.bytes, { sizes }).counted, reference);
        },
      ),
      { numRuns: 10, seed: 42 },
    );
  });

  it("stops tally() before a given LSN, where next() then returns that record", () => {
    const { infos } = decodeAll(varied);
    for (const i of [3, 1000, Math.floor(infos.length / 2), infos.length - 2]) {
      const before = infos[i]!.lsn;
      const reference = tallyAll(varied, varied.bytes, { useTally: false, before }).counted;
      assert.equal(reference.stoppedAt, before);
      assert.equal(reference.records, i);
      for (const sizes of [[varied.bytes.length], [65536], [8000, 24]]) {
        assert.deepEqual(tallyAll(varied, varied.bytes, { sizes, before }).counted, reference);
      }
    }
  });

  it("counts with tally() up to the same error as next() in corrupted WAL (fast-check)", () => {
    const { infos } = decodeAll(varied);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: varied.bytes.length - 1 }),
        fc.integer({ min: 0, max: 7 }),
        fc.constantFrom(varied.bytes.length, 1 << 20, 65536, 12345),
        (at, bit, size) => {
          const bad = Buffer.from(varied.bytes);
          bad[at]! ^= 1 << bit;
          const reference = tallyAll(varied, bad, { useTally: false, sizes: [size] }).counted;
          assert.deepEqual(tallyAll(varied, bad, { sizes: [size] }).counted, reference);
        },
      ),
      { numRuns: 40, seed: 7 },
    );
    // Each check tally() makes, broken on purpose in a record in the middle of a page.
    const target = infos.find(
      (r, i) => i > 500 && r.totLen > 60 && (r.lsn % 8192n) + BigInt(r.totLen) < 8000n,
    )!;
    const at = Number(target.lsn - varied.startLsn);
    const page = Number((target.lsn / 8192n) * 8192n - varied.startLsn);
    // Record fields are broken with the CRC made right again: each check must catch its own.
    const breaks: [string, (b: Buffer) => void][] = [
      ["CRC", (b) => (b[at + 40]! ^= 1)],
      [
        "prev-link",
        (b) => {
          b.writeUInt32LE(b.readUInt32LE(at + 8) + 8, at + 8);
          fixCrc(b, at);
        },
      ],
      [
        "resource manager",
        (b) => {
          b[at + 17] = 99;
          fixCrc(b, at);
        },
      ],
      ["length", (b) => b.writeUInt32LE(23, at)],
      [
        "block header",
        (b) => {
          b[at + 24] = 200;
          fixCrc(b, at);
        },
      ],
      [
        "XLOG_SWITCH",
        (b) => {
          b[at + 16] = 0x40;
          b[at + 17] = 0;
          fixCrc(b, at);
        },
      ],
      ["page magic", (b) => b.writeUInt16LE(0xd113, page)],
      ["page address", (b) => b.writeUInt32LE(b.readUInt32LE(page + 8) + 8192, page + 8)],
      ["page timeline", (b) => b.writeUInt32LE(0, page + 4)],
      ["page contrecord flag", (b) => (b[page + 2]! |= 1)],
    ];
    // And the page header a record continued from the page before relies on (tally() counts
    // such records when all of their pages are in the chunk).
    const spanning = infos.find(
      (r, i) =>
        i > 500 &&
        (r.lsn % 8192n) + BigInt(r.totLen) > 8192n &&
        (r.lsn % 8192n) + BigInt(r.totLen) < 16000n &&
        r.lsn / BigInt(varied.segmentSize) === r.end / BigInt(varied.segmentSize),
    )!;
    const cont = Number((spanning.lsn / 8192n + 1n) * 8192n - varied.startLsn);
    breaks.push(
      [
        "continuation: remaining length",
        (b) => b.writeUInt32LE(b.readUInt32LE(cont + 16) + 8, cont + 16),
      ],
      ["continuation: no contrecord flag", (b) => (b[cont + 2]! &= ~1)],
      ["continuation: overwrite flag", (b) => (b[cont + 2]! |= 8)],
      ["continuation: long header flag", (b) => (b[cont + 2]! |= 2)],
      [
        "continuation: page address",
        (b) => b.writeUInt32LE(b.readUInt32LE(cont + 8) + 8192, cont + 8),
      ],
      ["continuation: magic", (b) => b.writeUInt16LE(0xd113, cont)],
      ["continuation: data", (b) => (b[cont + 30]! ^= 0x40)],
    );
    for (const [what, breakIt] of breaks) {
      const bad = Buffer.from(varied.bytes);
      breakIt(bad);
      const reference = tallyAll(varied, bad, { useTally: false }).counted;
      assert.ok(reference.error !== undefined, `${what}: an error`);
      assert.deepEqual(tallyAll(varied, bad).counted, reference, what);
      assert.deepEqual(tallyAll(varied, bad, { sizes: [1 << 20] }).counted, reference, what);
    }
  });

  it("decodes chunks read with their CRCs computed ahead, and still finds corruption", async () => {
    const reference = decodeAll(varied);
    const dir = join(tmpdir(), `tideline-crclist-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    try {
      const run = async (bytes: Buffer, chunk: number) => {
        const file = join(dir, "wal");
        writeFileSync(file, bytes);
        const fd = openSync(file, "r");
        const dec = new WalDecoder({ startLsn: varied.startLsn, segmentSize: varied.segmentSize });
        const records: string[] = [];
        let listed = 0;
        let error: WalDecodeError | undefined;
        try {
          for (let pos = 0; pos < bytes.length; pos += chunk) {
            const { bytes: got, crcs } = await readWithRecordCrcs(
              fd,
              pos,
              Buffer.allocUnsafeSlow(chunk),
            );
            assert.ok(got.equals(bytes.subarray(pos, pos + chunk)), `bytes at ${pos}`);
            listed += crcs?.count ?? 0;
            dec.push(got, crcs);
            for (const r of dec.records()) records.push(signature(r));
          }
          dec.end();
          for (const r of dec.records()) records.push(signature(r));
        } catch (e) {
          if (!(e instanceof WalDecodeError)) throw e;
          error = e;
        } finally {
          closeSync(fd);
        }
        return { records, listed, error };
      };
      for (const chunk of [1 << 20, 196608, 65536, 8192]) {
        const r = await run(varied.bytes, chunk);
        // 192 KiB chunks hold segment boundaries (long page headers) inside them.
        assert.deepEqual(r.records, reference.records, `${chunk}-byte chunks`);
        assert.equal(r.error?.message, reference.error?.message);
        assert.ok(r.listed > reference.records.length * 0.8, `${r.listed} listed`);
      }
      const { infos } = reference;
      const target = infos.find(
        (r, i) => i > 300 && r.totLen > 60 && (r.lsn % 8192n) + BigInt(r.totLen) < 8000n,
      )!;
      const flipped = Buffer.from(varied.bytes);
      flipped[Number(target.lsn - varied.startLsn) + 30]! ^= 0x10;
      const bad = await run(flipped, 65536);
      assert.ok(bad.error instanceof WalCrcMismatchError, String(bad.error));
      assert.equal(bad.error.lsn, target.lsn);
      assert.deepEqual(bad.records, reference.records.slice(0, infos.indexOf(target)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("treats a recycled segment after the last one as the end of WAL", () => {
    // PostgreSQL recycles old segments by renaming them: their pages carry old addresses.
    const { infos } = decodeAll(varied);
    const sw = infos.findIndex((r) => r.rmid === 0 && r.rmgrInfo === 0x40);
    const segEnd = Number(infos[sw]!.end - varied.startLsn);
    assert.equal(segEnd % varied.segmentSize, 0);
    const live = Buffer.concat([
      varied.bytes.subarray(0, segEnd),
      varied.bytes.subarray(0, varied.segmentSize),
    ]);
    const r = decodeAll(varied, live);
    assert.ok(r.error instanceof WalPageHeaderError, String(r.error));
    assert.equal(r.error.code, "page-address");
    assert.equal(r.error.endOfWal, true);
    assert.equal(r.error.lsn, infos[sw]!.end);
    assert.equal(r.records.length, sw + 1);
  });
});
