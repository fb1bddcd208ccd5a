// Resource manager and record type names against real servers, PostgreSQL 15..18.
//
// Per version, one throwaway server (test/support/embedded.ts):
// 1. natural WAL: a workload touching as many record types as a test can cheaply reach; for
//    every record pg_walinspect lists (from the first WAL initdb wrote), read xl_rmid and
//    xl_info from the segment file and compare rmgrName/recordTypeName with
//    resource_manager/record_type;
// 2. every (rmid, info) combination: rewrite the headers of a few hundred logical-message
//    records in the segment file to every built-in rmid x every high nibble of xl_info (with
//    a fresh CRC) and compare pg_get_wal_stats(per_record) — which names records only through
//    the rmgr's identify function, without parsing their payload — with our names. This
//    checks every table entry, and every UNKNOWN, against the server's own code.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, describe, it } from "node:test";
import type pg from "pg";
import {
  RM_MAX_BUILTIN_ID,
  RmgrId,
  recordTypeName,
  recordTypes,
  rmgrName,
  rmgrs,
  SUPPORTED_VERSIONS,
  type SupportedVersion,
} from "../../src/wal/rmgr/index.js";
import { type EmbeddedPostgres, startEmbedded } from "../support/embedded.js";
import { parseLsnText, RECORD_HEADER_SIZE, WalFiles } from "../support/wal-bytes.js";
import { RMGR_NAMES_15 } from "../support/waldump.js";

const coverage = new Map<SupportedVersion, Set<string>>();

after(() => {
  for (const [v, pairs] of coverage) {
    console.log(
      `# PostgreSQL ${v}: ${pairs.size} distinct (rmgr, record type) pairs in natural WAL`,
    );
    console.log(`#   ${[...pairs].sort().join(" ")}`);
    const missing = rmgrs(v).flatMap((r) =>
      recordTypes(v, r.id)
        .map((t) => `${r.name}/${t.name}`)
        .filter((name) => !pairs.has(name)),
    );
    console.log(`#   not reached naturally (checked by rewriting only): ${missing.join(" ")}`);
  }
});

/**
 * The workload, in steps; each string is one simple-protocol query. A string of several
 * statements runs as one implicit transaction: VACUUM, CREATE DATABASE, ALTER SYSTEM and
 * transaction control get strings of their own.
 */
function workload(tablespaceDir: string): readonly string[] {
  return [
    `CREATE EXTENSION bloom`,
    // heap, btree, TOAST, HOT, locks, speculative insertion
    `CREATE TABLE t (id int PRIMARY KEY, k int, v text, pad text) WITH (fillfactor = 70);
     CREATE INDEX t_k ON t (k);
     INSERT INTO t SELECT g, g % 100, 'v' || g, repeat('x', 40) FROM generate_series(1, 20000) g;
     UPDATE t SET v = v || 'u' WHERE id % 10 = 0;
     UPDATE t SET k = k + 1 WHERE id % 7 = 0;
     DELETE FROM t WHERE id % 5 = 0;
     INSERT INTO t VALUES (100001, 1, 'a', 'b') ON CONFLICT DO NOTHING;
     INSERT INTO t VALUES (1, 1, 'a', 'b') ON CONFLICT (id) DO UPDATE SET v = 'upserted';
     SELECT * FROM t WHERE id < 50 FOR UPDATE;
     INSERT INTO t SELECT 200000 + g, 0, (SELECT string_agg(md5(g::text || i::text), '')
       FROM generate_series(1, 200) i), '' FROM generate_series(1, 20) g;`,
    // HOT chains on one page, then on-access pruning
    `UPDATE t SET v = v || '.' WHERE id <= 40; UPDATE t SET v = v || '.' WHERE id <= 40;
     UPDATE t SET v = v || '.' WHERE id <= 40; UPDATE t SET v = v || '.' WHERE id <= 40;
     SELECT count(*) FROM t WHERE id <= 40;`,
    // bottom-up deletion and deduplication in btree
    `CREATE TABLE bu (id int PRIMARY KEY, a int, b int);
     CREATE INDEX bu_a ON bu (a); CREATE INDEX bu_b ON bu (b);
     INSERT INTO bu SELECT g, g % 10, g FROM generate_series(1, 4000) g;
     UPDATE bu SET b = b + 1; UPDATE bu SET b = b + 1; UPDATE bu SET b = b + 1;`,
    // multi-insert through COPY
    `CREATE TABLE m (a int, b text); COPY m (a) FROM PROGRAM 'seq 1 5000';`,
    // sequences, subtransactions (> 64: ASSIGNMENT), aborts, 2PC
    `CREATE SEQUENCE s; SELECT nextval('s') FROM generate_series(1, 100);
     CREATE TABLE sub (a int);
     DO $$ BEGIN FOR i IN 1..70 LOOP BEGIN INSERT INTO sub VALUES (i);
       IF i % 10 = 0 THEN RAISE EXCEPTION 'x'; END IF; EXCEPTION WHEN others THEN NULL; END;
       END LOOP; END $$;
`,
    `BEGIN; INSERT INTO sub VALUES (0); ROLLBACK;`,
    `BEGIN; INSERT INTO sub VALUES (1); PREPARE TRANSACTION 'p1';`,
    `COMMIT PREPARED 'p1'`,
    `BEGIN; INSERT INTO sub VALUES (2); PREPARE TRANSACTION 'p2';`,
    `ROLLBACK PREPARED 'p2'`,
    // hash: create, splits, overflow pages, vacuum
    `CREATE TABLE h (a int); CREATE INDEX h_a ON h USING hash (a);
     INSERT INTO h SELECT g FROM generate_series(1, 15000) g;
     INSERT INTO h SELECT 7 FROM generate_series(1, 2000);
     DELETE FROM h WHERE a % 3 = 0 OR a = 7;`,
    `VACUUM h`,
    // gin: pending list, then posting trees
    `CREATE TABLE g (a int[]); CREATE INDEX g_a ON g USING gin (a) WITH (fastupdate = on);
     INSERT INTO g SELECT ARRAY[g % 50, g] FROM generate_series(1, 3000) g;`,
    `VACUUM g`,
    `ALTER INDEX g_a SET (fastupdate = off);
     INSERT INTO g SELECT ARRAY[1, g] FROM generate_series(1, 20000) g;
     DELETE FROM g WHERE a[2] % 2 = 0 OR a[2] > 10000;`,
    `VACUUM g`,
    // gist and spgist: inserts, splits, deletes, vacuum
    `CREATE TABLE gs (p point, t text);
     CREATE INDEX gs_p ON gs USING gist (p); CREATE INDEX gs_sp ON gs USING spgist (p);
     CREATE INDEX gs_st ON gs USING spgist (t);
     INSERT INTO gs SELECT point(g % 200, g / 200), 'k' || (g % 97) || 'x' || g
       FROM generate_series(1, 20000) g;
     DELETE FROM gs WHERE p[0] > 20;`,
    `VACUUM gs`,
    `SELECT txid_current()`,
    `VACUUM gs`,
    `CREATE TABLE spr (p point); CREATE INDEX spr_p ON spr USING spgist (p);
     INSERT INTO spr SELECT point(g, g) FROM generate_series(1, 10) g; DELETE FROM spr;`,
    `VACUUM spr`,
    `INSERT INTO gs SELECT point(g % 200, g / 200), 'z' || g FROM generate_series(1, 5000) g;`,
    // brin: create, insert, revmap extension, summarize, desummarize
    `CREATE TABLE b (a int); INSERT INTO b SELECT g FROM generate_series(1, 2000) g;
     CREATE INDEX b_a ON b USING brin (a) WITH (pages_per_range = 1);
     INSERT INTO b SELECT g FROM generate_series(1, 20000) g;
     UPDATE b SET a = -a WHERE a % 500 = 0;
     SELECT brin_summarize_new_values('b_a'); SELECT brin_desummarize_range('b_a', 0);`,
    `CREATE TABLE bt (s text) WITH (fillfactor = 50);
     INSERT INTO bt SELECT 'a' || g FROM generate_series(1, 5000) g;
     CREATE INDEX bt_s ON bt USING brin (s) WITH (pages_per_range = 1);
     INSERT INTO bt SELECT repeat('z', 300) || g FROM generate_series(1, 300) g;`,
    // index scans mark dead entries; inserts into their full pages clean them up first
    `CREATE TABLE kd (p point, a int, t text); CREATE INDEX kd_p ON kd USING gist (p);
     CREATE INDEX kd_a ON kd USING hash (a);
     INSERT INTO kd SELECT point(0, 0), 1, 'x' FROM generate_series(1, 3000);
     DELETE FROM kd;`,
    `SET enable_seqscan = off; SET enable_bitmapscan = off;
     SELECT count(t) FROM kd WHERE p <@ box '((-1,-1),(1,1))';
     SELECT count(t) FROM kd WHERE a = 1;
     RESET enable_seqscan; RESET enable_bitmapscan;`,
    `INSERT INTO kd SELECT point(0, 0), 1, 'y' FROM generate_series(1, 500)`,
    // generic WAL (bloom)
    `CREATE TABLE bl (a int, b int); CREATE INDEX bl_ab ON bl USING bloom (a, b);
     INSERT INTO bl SELECT g, g FROM generate_series(1, 2000) g;`,
    // unlogged table, truncate, vacuum variants, storage truncation
    `CREATE UNLOGGED TABLE u (a int PRIMARY KEY); INSERT INTO u SELECT generate_series(1, 1000);
     CREATE TABLE tr (a int); INSERT INTO tr SELECT generate_series(1, 1000); TRUNCATE tr;
     CREATE TABLE vt (a int PRIMARY KEY, b text);
     INSERT INTO vt SELECT g, repeat('y', 100) FROM generate_series(1, 20000) g;
     DELETE FROM vt WHERE a > 1000 OR a % 3 = 0;`,
    `VACUUM vt`,
    `VACUUM FREEZE t`,
    `VACUUM FULL m`,
    `VACUUM t`,
    // btree page reuse: pages deleted by vacuum, recycled by later splits
    `CREATE TABLE rb (a int PRIMARY KEY); INSERT INTO rb SELECT generate_series(1, 30000);
     DELETE FROM rb WHERE a <= 25000;`,
    `VACUUM rb`,
    `SELECT txid_current()`,
    `VACUUM rb`,
    `INSERT INTO rb SELECT generate_series(-30000, 0)`,
    // databases and tablespaces
    `CREATE DATABASE d1`,
    `CREATE DATABASE d2 STRATEGY file_copy`,
    `DROP DATABASE d1`,
    `DROP DATABASE d2`,
    `CREATE TABLESPACE ts LOCATION '${tablespaceDir}'`,
    `CREATE TABLE tst (a int) TABLESPACE ts; INSERT INTO tst SELECT generate_series(1, 100);
     DROP TABLE tst;`,
    `DROP TABLESPACE ts`,
    // logical messages, replication origins
    `SELECT pg_logical_emit_message(true, 'tl', 'hello'); SELECT pg_logical_emit_message(false, 'tl', 'x');
     SELECT pg_replication_origin_create('o1');
     SELECT pg_replication_origin_advance('o1', '0/1000');
     SELECT pg_replication_origin_drop('o1');`,
    // a logical slot: catalog rewrites log mappings (Heap2 REWRITE); mapped catalogs (RelMap)
    `SELECT pg_create_logical_replication_slot('tl_slot', 'test_decoding')`,
    `CREATE TABLE uc (a int, b text) WITH (user_catalog_table = true);
     INSERT INTO uc SELECT g, 'x' FROM generate_series(1, 100) g; UPDATE uc SET b = 'y';`,
    `VACUUM FULL uc`,
    `VACUUM FULL pg_class`,
    `SELECT pg_drop_replication_slot('tl_slot')`,
    // XLOG: checkpoint, hint-bit images, restore point, backup end, fpw change, switch
    `CREATE TABLE hint AS SELECT g FROM generate_series(1, 5000) g`,
    `CHECKPOINT`,
    `SELECT count(*) FROM hint`,
    `SELECT pg_create_restore_point('rp')`,
    `SELECT pg_backup_start('tl', true)`,
    `SELECT * FROM pg_backup_stop(false)`,
    `ALTER SYSTEM SET full_page_writes = off`,
    `SELECT pg_reload_conf(), pg_sleep(0.3)`,
    `CHECKPOINT`,
    `ALTER SYSTEM RESET full_page_writes`,
    `SELECT pg_reload_conf(), pg_sleep(0.3)`,
    `CHECKPOINT`,
    `SELECT pg_switch_wal()`,
  ];
}

/** Two sessions: a KEY SHARE lock that follows an update chain, and a MultiXact. */
async function concurrentLocks(srv: EmbeddedPostgres): Promise<void> {
  const a = await srv.connect();
  const b = await srv.connect();
  try {
    await a.query(
      `CREATE TABLE lk (id int PRIMARY KEY, v int); INSERT INTO lk VALUES (1, 0), (2, 0)`,
    );
    await a.query(`BEGIN; UPDATE lk SET v = 1 WHERE id = 1`);
    await b.query(`BEGIN; SELECT * FROM lk WHERE id = 1 FOR KEY SHARE`);
    await a.query(`COMMIT`);
    await b.query(`COMMIT`);
    await a.query(`BEGIN; SELECT * FROM lk WHERE id = 2 FOR SHARE`);
    await b.query(`BEGIN; SELECT * FROM lk WHERE id = 2 FOR SHARE`);
    await a.query(`COMMIT`);
    await b.query(`COMMIT`);
  } finally {
    await a.end();
    await b.end();
  }
}

interface RecordRow {
  readonly start_lsn: string;
  readonly resource_manager: string;
  readonly record_type: string;
}

async function walLocation(srv: EmbeddedPostgres) {
  const r = await srv.query<{ tli: number; seg: string }>(
    `SELECT (SELECT timeline_id FROM pg_control_checkpoint()) AS tli,
            (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg`,
  );
  const row = r.rows[0];
  assert.ok(row);
  return { walDir: srv.walDir, timeline: row.tli, segmentSize: Number(row.seg) };
}

async function checkNaturalWal(v: SupportedVersion, srv: EmbeddedPostgres, wal: WalFiles) {
  const end = (await srv.query<{ l: string }>(`SELECT pg_current_wal_flush_lsn()::text AS l`))
    .rows[0]?.l;
  const { rows } = await srv.query<RecordRow>(
    `SELECT start_lsn::text, resource_manager, record_type
       FROM pg_get_wal_records_info('0/1000000', $1)`,
    [end],
  );
  assert.ok(rows.length > 1000, `only ${rows.length} records`);
  const pairs = new Set<string>();
  const mismatches: string[] = [];
  for (const row of rows) {
    const header = wal.read(parseLsnText(row.start_lsn), RECORD_HEADER_SIZE);
    const info = header[16] as number;
    const rmid = header[17] as number;
    const ours = `${rmgrName(v, rmid)}/${recordTypeName(v, rmid, info)}`;
    const theirs = `${row.resource_manager}/${row.record_type}`;
    if (ours !== theirs && mismatches.length < 20) {
      mismatches.push(
        `${row.start_lsn} rmid ${rmid} info 0x${info.toString(16)}: ${ours} != ${theirs}`,
      );
    }
    pairs.add(theirs);
  }
  assert.deepEqual(mismatches, []);
  coverage.set(v, pairs);
  return rows.length;
}

/**
 * The name per-record statistics (pg_walinspect's `pg_get_wal_stats(..., true)`, pg_waldump's
 * `--stats=record`) give a record: both key records by `info >> 4`, Transaction's by
 * `(info >> 4) & 7`, and name the key through the rmgr's identify function.
 */
function statsName(v: SupportedVersion, rmid: number, info: number): string {
  const key = rmid === RmgrId.Transaction ? info & 0x70 : info & 0xf0;
  return `${rmgrName(v, rmid)}/${recordTypeName(v, rmid, key)}`;
}

/** Every built-in rmid x every high nibble of xl_info. */
function builtinCombinations(): [number, number][] {
  const combos: [number, number][] = [];
  for (let rmid = 0; rmid <= RM_MAX_BUILTIN_ID; rmid++) {
    for (let info = 0; info < 256; info += 16) {
      // An XLOG SWITCH would make the reader skip the rest of the segment.
      if (rmid === RmgrId.XLOG && info === 0x40) continue;
      // Stats key Transaction records by (info >> 4) & 7: 0x80.. would fold onto 0x00..
      if (rmid === RmgrId.Transaction && info >= 0x80) continue;
      combos.push([rmid, info]);
    }
  }
  return combos;
}

interface RewrittenWindow {
  readonly start: string;
  readonly end: string;
  /** Per-record statistics names and counts our tables give for the window. */
  readonly expected: Map<string, number>;
}

/**
 * Emits logical messages, rewrites their headers to `combos` (one each, single-page records
 * only) and returns the window's expected per-record statistics.
 */
async function rewriteWindow(
  v: SupportedVersion,
  srv: EmbeddedPostgres,
  wal: WalFiles,
  combos: readonly [number, number][],
): Promise<RewrittenWindow> {
  const lsn = async () =>
    (await srv.query<{ l: string }>(`SELECT pg_current_wal_insert_lsn()::text AS l`)).rows[0]
      ?.l as string;
  const start = await lsn();
  await srv.query(
    `SELECT count(pg_logical_emit_message(false, 'tl', 'abcdefgh'))
       FROM generate_series(1, ${combos.length + 60})`,
  );
  const end = await lsn();
  await srv.query(`SELECT pg_switch_wal()`);

  // List the window before rewriting it: pg_walinspect cannot describe rewritten records.
  const { rows } = await srv.query<RecordRow>(
    `SELECT start_lsn::text, resource_manager, record_type
       FROM pg_get_wal_records_info($1, $2)`,
    [start, end],
  );
  const expected = new Map<string, number>();
  const count = (name: string) => expected.set(name, (expected.get(name) ?? 0) + 1);
  let next = 0;
  for (const row of rows) {
    const at = parseLsnText(row.start_lsn);
    const combo = combos[next];
    if (row.resource_manager === "LogicalMessage" && combo && wal.patchRecord(at, ...combo)) {
      next++;
      count(statsName(v, ...combo));
    } else {
      const header = wal.read(at, RECORD_HEADER_SIZE);
      count(statsName(v, header[17] as number, header[16] as number));
    }
  }
  assert.equal(next, combos.length, "not enough single-page records to rewrite");
  return { start, end, expected };
}

/** Differences between a tool's per-record statistics and ours, one line per name. */
function statsDifferences(
  rows: Iterable<readonly [string, number]>,
  expected: Map<string, number>,
): string[] {
  // One row per (rmid, info >> 4) that occurred; names can repeat (Generic names all 16).
  const actual = new Map<string, number>();
  for (const [name, n] of rows) actual.set(name, (actual.get(name) ?? 0) + n);
  return [...new Set([...actual.keys(), ...expected.keys()])]
    .filter((name) => actual.get(name) !== expected.get(name))
    .sort()
    .map((name) => `${name}: tool ${actual.get(name) ?? 0}, ours ${expected.get(name) ?? 0}`);
}

/** Every built-in (rmid, info >> 4) through pg_walinspect's per-record statistics. */
async function checkEveryCombination(
  v: SupportedVersion,
  srv: EmbeddedPostgres,
  wal: WalFiles,
): Promise<RewrittenWindow & { readonly combinations: number }> {
  const combos = builtinCombinations();
  const window = await rewriteWindow(v, srv, wal, combos);
  const stats = await srv.query<Record<string, string>>(
    `SELECT * FROM pg_get_wal_stats($1, $2, true) WHERE count > 0`,
    [window.start, window.end],
  );
  const rows = stats.rows.map(
    (r) => [r["resource_manager/record_type"] as string, Number(r.count)] as const,
  );
  assert.deepEqual(statsDifferences(rows, window.expected), []);
  return { ...window, combinations: combos.length };
}

/** Debian's PostgreSQL 15 pg_waldump, when installed (the CI installs it). */
const PG_WALDUMP_15 = "/usr/lib/postgresql/15/bin/pg_waldump";

/** `pg_waldump --stats=record` rows of a window: name and count. */
function waldumpStats(walDir: string, start: string, end: string): [string, number][] {
  const r = spawnSync(PG_WALDUMP_15, ["-p", walDir, "-s", start, "-e", end, "--stats=record"], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  const rows: [string, number][] = [];
  for (const line of r.stdout.split("\n")) {
    const m = /^(\S.*?)\s+(\d+) \(\s*[\d.]+\)/.exec(line);
    if (m && m[1] !== "Total") rows.push([m[1] as string, Number(m[2])]);
  }
  return rows;
}

/**
 * pg_waldump (15) names: the built-in combinations already rewritten for pg_walinspect, and
 * custom resource managers (`custom###`, which a server without the module cannot read).
 */
function checkWaldump15(
  srv: EmbeddedPostgres,
  builtin: RewrittenWindow,
  custom: RewrittenWindow,
): void {
  assert.deepEqual(
    statsDifferences(waldumpStats(srv.walDir, builtin.start, builtin.end), builtin.expected),
    [],
  );
  assert.deepEqual(
    statsDifferences(waldumpStats(srv.walDir, custom.start, custom.end), custom.expected),
    [],
  );
}

describe("resource manager and record type names against real servers", () => {
  for (const v of SUPPORTED_VERSIONS) {
    it(`PostgreSQL ${v}: every record's rmgr and type, every (rmid, info) combination`, async (t) => {
      const t0 = Date.now();
      const srv = await startEmbedded({
        version: v,
        walLevel: "logical",
        settings: {
          wal_compression: true,
          wal_log_hints: true,
          wal_keep_size: "1GB",
          autovacuum: false,
          max_wal_size: "1GB",
        },
      });
      let wal: WalFiles | undefined;
      let client: pg.Client | undefined;
      try {
        await srv.query(`CREATE EXTENSION pg_walinspect`);
        // A restart: a shutdown checkpoint and, with a changed setting, PARAMETER_CHANGE.
        await srv.restart({ max_connections: 21 });
        await concurrentLocks(srv);
        client = await srv.connect();
        for (const sql of workload(srv.makeDir("tablespace"))) {
          await client.query(sql);
        }
        wal = new WalFiles(await walLocation(srv));
        const n = await checkNaturalWal(v, srv, wal);
        const builtin = await checkEveryCombination(v, srv, wal);
        let waldump = "";
        if (v === 15 && existsSync(PG_WALDUMP_15)) {
          const customCombos: [number, number][] = [];
          for (const rmid of [128, 129, 200, 255]) {
            for (let info = 0; info < 256; info += 16) customCombos.push([rmid, info]);
          }
          checkWaldump15(srv, builtin, await rewriteWindow(v, srv, wal, customCombos));
          waldump = `; pg_waldump 15 agrees, ${customCombos.length} custom combinations`;
        }
        t.diagnostic(
          `${n} natural records, ${coverage.get(v)?.size} distinct pairs; ${builtin.combinations} rewritten combinations${waldump}; ${Date.now() - t0} ms`,
        );
        // The same names in 15..18, as pg_waldump prints them.
        assert.deepEqual(
          rmgrs(v).map((r) => r.name),
          RMGR_NAMES_15,
        );
        // pg_get_wal_stats without per_record lists every rmgr, in id order.
        const all = await srv.query<Record<string, string>>(
          `SELECT * FROM pg_get_wal_stats('0/1000000', pg_current_wal_flush_lsn())`,
        );
        assert.deepEqual(
          all.rows.map((r) => r["resource_manager/record_type"]),
          rmgrs(v).map((r) => r.name),
        );
      } finally {
        wal?.close();
        await client?.end();
        await srv.stop();
      }
    });
  }
});
