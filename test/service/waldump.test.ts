/**
 * `tideline waldump` against PostgreSQL 15's own pg_waldump, on WAL a real server wrote.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";

const BIN = "dist/cli/main.js";

function tideline(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", maxBuffer: 1 << 30 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A record line reduced to what both tools print: header fields, type, block refs. */
function normalize(line: string): string {
  const m = /^(rmgr: .*?, desc: )(\S+)/.exec(line);
  if (m === null) throw new Error(`not a pg_waldump record line: ${line}`);
  const blocks = [
    ...line.matchAll(
      /, blkref #\d+: rel \d+\/\d+\/\d+(?: fork \w+)? blk \d+(?: FPW(?: for WAL verification)?)?/g,
    ),
  ]
    .map((b) => b[0])
    .join("");
  return `${m[1]}${m[2]}${blocks}`;
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.startsWith("rmgr: "));
}

describe("tideline waldump vs pg_waldump (PostgreSQL 15)", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let pg: Cluster;
  let segs: string[];
  let scratch: string;

  before(async () => {
    pg = await startCluster({ settings: { wal_level: "replica", max_prepared_transactions: 5 } });
    await pg.pgbench(["-i", "-s", "2", "-q"]);
    await pg.pgbench(["-n", "-t", "300", "-c", "2"]);
    await pg.sql(`
      CREATE TABLE docs (id serial PRIMARY KEY, body text);
      INSERT INTO docs (body) SELECT repeat(md5(g::text), 200) FROM generate_series(1, 300) g; -- TOAST
      CREATE INDEX ON docs USING hash (id);
      CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 1000) g;
      VACUUM FREEZE docs;
      SELECT pg_logical_emit_message(true, 'tideline', 'hello');
      CHECKPOINT;
      UPDATE docs SET body = 'short' WHERE id % 3 = 0;
    `);
    await pg.switchWal();
    await pg.sql("INSERT INTO docs (body) SELECT 'after switch' FROM generate_series(1, 100)");
    await pg.switchWal();
    await pg.sql(
      "INSERT INTO docs (body) SELECT 'after the second switch' FROM generate_series(1, 100)",
    );
    segs = pg.segmentFiles();
    assert.ok(segs.length >= 3, `three segments at least: ${segs.join(", ")}`);
    scratch = mkdtempSync(join(tmpdir(), "tideline-waldump-"));
  });

  after(async () => {
    await pg?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it("prints the same records, fields and block references as pg_waldump", () => {
    const ours = tideline("waldump", pg.walDir);
    assert.equal(ours.status, 0, ours.stderr);
    assert.match(ours.stderr, /end of WAL/);
    const theirs = pg.waldump(["-p", pg.walDir, segs[0]!, segs[segs.length - 1]!]);
    const a = lines(ours.stdout).map(normalize);
    const b = lines(theirs.stdout).map(normalize);
    assert.ok(b.length > 5_000, `a real workload: ${b.length} records`);
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.equal(a[i], b[i], `record ${i}`);
  });

  it("prints pg_waldump's --stats table character for character", () => {
    const ours = tideline("waldump", "--stats", pg.walDir);
    const theirs = pg.waldump(["--stats", "-p", pg.walDir, segs[0]!, segs[segs.length - 1]!]);
    assert.equal(ours.status, 0, ours.stderr);
    assert.equal(ours.stdout, theirs.stdout);
  });

  it("--stats --json carries the same numbers, and --json one object per record", () => {
    const stats = JSON.parse(tideline("waldump", "--stats", "--json", pg.walDir).stdout) as {
      rmgrs: Record<
        string,
        { count: number; recordBytes: number; fpiBytes: number; combinedBytes: number }
      >;
      total: { count: number; recordBytes: number; fpiBytes: number; combinedBytes: number };
    };
    const text = pg.waldump(["--stats", "-p", pg.walDir, segs[0]!, segs[segs.length - 1]!]).stdout;
    for (const [name, row] of Object.entries(stats.rmgrs)) {
      const m = new RegExp(
        `^${name} +(\\d+) \\(.*?\\) +(\\d+) \\(.*?\\) +(\\d+) \\(.*?\\) +(\\d+)`,
        "m",
      ).exec(text);
      assert.ok(m, `pg_waldump has a row for ${name}`);
      assert.deepEqual(
        [row.count, row.recordBytes, row.fpiBytes, row.combinedBytes],
        m.slice(1).map(Number),
        name,
      );
    }
    const records = tideline("waldump", "--json", pg.walDir)
      .stdout.trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(records.length, stats.total.count);
    assert.equal(
      records.reduce((n, r) => n + r.fpiLen, 0),
      stats.total.fpiBytes,
    );
    const first = records[0];
    assert.deepEqual(Object.keys(first), [
      "lsn",
      "end",
      "prev",
      "rmgr",
      "type",
      "xid",
      "recLen",
      "totLen",
      "fpiLen",
      "blocks",
    ]);
    assert.match(first.lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    const withBlock = records.find((r) => r.blocks.length > 0);
    assert.deepEqual(Object.keys(withBlock.blocks[0]), ["id", "rel", "fork", "blk", "fpw"]);
    assert.ok(records.some((r) => r.type === "SWITCH" && r.rmgr === "XLOG"));
  });

  it("--start and --end select the same records as pg_waldump -s/-e", () => {
    const all = tideline("waldump", "--json", pg.walDir)
      .stdout.trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const start = all[1000].lsn as string;
    const end = all[3000].end as string;
    const ours = tideline("waldump", "--start", start, "--end", end, pg.walDir);
    assert.equal(ours.status, 0, ours.stderr);
    const theirs = pg.waldump(["-p", pg.walDir, "-s", start, "-e", end]);
    assert.deepEqual(lines(ours.stdout).map(normalize), lines(theirs.stdout).map(normalize));
    assert.equal(lines(ours.stdout).length, 2001);
  });

  it("reports a gap between segment files instead of joining them", () => {
    const dir = mkdtempSync(join(scratch, "gap-"));
    copyFileSync(join(pg.walDir, segs[0]!), join(dir, segs[0]!));
    copyFileSync(join(pg.walDir, segs[2]!), join(dir, segs[2]!));
    const r = tideline("waldump", dir);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`gap.*${segs[0]}.*${segs[2]}`));
    assert.equal(r.stdout, "");
  });

  it("reports several timelines, and reads the one chosen with --timeline", () => {
    const dir = mkdtempSync(join(scratch, "tli-"));
    copyFileSync(join(pg.walDir, segs[0]!), join(dir, segs[0]!));
    copyFileSync(join(pg.walDir, segs[1]!), join(dir, `00000002${segs[1]!.slice(8)}`));
    const r = tideline("waldump", dir);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /several timelines \(1, 2\).*--timeline/);
    const one = tideline("waldump", "--timeline", "1", dir);
    assert.equal(one.status, 0, one.stderr);
    assert.ok(lines(one.stdout).length > 0);
  });

  it("reports segment files of different sizes", () => {
    const dir = mkdtempSync(join(scratch, "size-"));
    copyFileSync(join(pg.walDir, segs[0]!), join(dir, segs[0]!));
    copyFileSync(join(pg.walDir, segs[1]!), join(dir, segs[1]!));
    truncateSync(join(dir, segs[1]!), 1 << 20);
    const r = tideline("waldump", dir);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /differ in size/);
  });

  it("stops at damaged WAL with exit 1, naming the LSN, after printing what came before", () => {
    const dir = mkdtempSync(join(scratch, "crc-"));
    const file = join(dir, segs[0]!);
    const bytes = readFileSync(join(pg.walDir, segs[0]!));
    const records = tideline("waldump", "--json", pg.walDir)
      .stdout.trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const segStart =
      BigInt(`0x${segs[0]!.slice(8, 16)}`) * 0x1_0000_0000n +
      BigInt(`0x${segs[0]!.slice(16)}`) * 0x100_0000n;
    const lsnOf = (text: string) => {
      const [hi, lo] = text.split("/");
      return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
    };
    // A record well inside the first segment, whose header does not straddle a page.
    const victim = records.find((r) => {
      const at = lsnOf(r.lsn) - segStart;
      return r.totLen > 200 && at > 0x10000n && at < 0xc00000n && (at % 8192n) + 200n < 8192n;
    });
    assert.ok(victim, "a record to damage");
    const offset = Number(lsnOf(victim.lsn) - segStart) + 100;
    bytes[offset]! ^= 0x40;
    writeFileSync(file, bytes);
    const r = tideline("waldump", dir);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`error in WAL: .*${victim.lsn}`));
    const printed = lines(r.stdout);
    assert.ok(printed.length > 0);
    const [hi, lo] = victim.lsn.split("/");
    assert.ok(
      !printed.some((l) => l.includes(`lsn: ${hi}/${lo.padStart(8, "0")},`)),
      "the damaged record is not printed",
    );
  });

  it("rejects bad arguments with a message naming the value", () => {
    const badLsn = tideline("waldump", "--start", "nonsense", pg.walDir);
    assert.notEqual(badLsn.status, 0);
    assert.match(badLsn.stderr, /"nonsense" is not an LSN/);
    const badTli = tideline("waldump", "--timeline", "0", pg.walDir);
    assert.notEqual(badTli.status, 0);
    assert.match(badTli.stderr, /"0" is not a timeline/);
    const missing = tideline("waldump", join(scratch, "does-not-exist"));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /No such file or directory: ".*does-not-exist"/);
    const notWal = join(scratch, "notes.txt");
    writeFileSync(notWal, "hi");
    assert.match(tideline("waldump", notWal).stderr, /not named like a WAL segment file/);
  });
});
