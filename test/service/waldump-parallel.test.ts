/**
 * `tideline waldump --stats` on several threads (`--jobs`) against one thread and against
 * PostgreSQL 15's pg_waldump, on WAL in 1 MiB segments so that one run has dozens of ranges:
 * the same table, the same end of WAL, the same error at the same LSN with the same exit code.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runParallelStats } from "../../src/service/cli/commands/waldump_parallel.js";
import { splitRanges } from "../../src/service/cli/commands/waldump_scan.js";
import { type Cluster, HAVE_PG15, PG15_BIN, startCluster } from "../support/postgres.js";

const BIN = "dist/cli/main.js";
const MiB = 1 << 20;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

const TRACE = /^tideline waldump: (\d+) threads, (\d+) ranges: (.*)\n/m;

/**
 * Runs the command line. With `--jobs` above 1, the trace line (TIDELINE_WALDUMP_TRACE) must
 * say that the ranges were decoded on several threads and joined up; it is then removed, so
 * that the rest compares with a one-thread run.
 */
function tideline(...args: string[]): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    maxBuffer: 1 << 30,
    env: { ...process.env, TIDELINE_WALDUMP_TRACE: "1" },
  });
  let stderr = r.stderr;
  const jobs = args.indexOf("--jobs");
  if (jobs >= 0 && Number(args[jobs + 1]) > 1) {
    const m = TRACE.exec(stderr);
    assert.ok(m, `the parallel path ran: ${stderr}`);
    assert.ok(Number(m[1]) > 1 && Number(m[2]) > 4, m[0]);
    assert.equal(m[3], "ranges joined up");
    stderr = stderr.replace(TRACE, "");
  }
  return { status: r.status, stdout: r.stdout, stderr };
}

/** pg_waldump itself (it runs as root too), on any directory. */
function pgWaldump(args: string[]): Run {
  const r = spawnSync(join(PG15_BIN, "pg_waldump"), args, {
    encoding: "utf8",
    maxBuffer: 1 << 30,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function parseLsn(text: string): bigint {
  const [hi, lo] = text.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

interface JsonRecord {
  lsn: string;
  end: string;
  totLen: number;
}

describe("tideline waldump --stats on several threads (PostgreSQL 15, 1 MiB segments)", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let pg: Cluster;
  let segs: string[];
  let scratch: string;
  let records: JsonRecord[];
  let segStart: bigint;

  /** A copy of the segments in a directory of its own. */
  function copyWal(name: string): string {
    const dir = join(scratch, name);
    mkdirSync(dir);
    for (const s of segs) copyFileSync(join(pg.walDir, s), join(dir, s));
    return dir;
  }

  /** Where `lsn` is: the segment file and the byte in it. */
  function locate(lsn: bigint): { file: string; offset: number } {
    const index = Number((lsn - segStart) / BigInt(MiB));
    return { file: segs[index]!, offset: Number((lsn - segStart) % BigInt(MiB)) };
  }

  before(async () => {
    pg = await startCluster({
      walSegmentSizeMiB: 1,
      settings: { wal_keep_size: "1GB", max_wal_size: "1GB", checkpoint_timeout: "1h" },
    });
    await pg.pgbench(["-i", "-s", "3", "-q"]);
    await pg.switchWal();
    await pg.pgbench(["-n", "-t", "400", "-c", "2"]);
    await pg.sql(`
      CREATE TABLE docs (id serial PRIMARY KEY, body text);
      INSERT INTO docs (body) SELECT repeat(md5(g::text), 300) FROM generate_series(1, 400) g;
      CHECKPOINT;
      UPDATE docs SET body = 'short' WHERE id % 3 = 0;
    `);
    await pg.switchWal();
    await pg.pgbench(["-n", "-t", "300", "-c", "2"]);
    // Stop cleanly: the last segment ends in zeros, the end of WAL inside the last range.
    await pg.stopServer();
    segs = pg.segmentFiles();
    assert.ok(segs.length >= 24, `enough segments for many ranges: ${segs.length}`);
    segStart =
      BigInt(`0x${segs[0]!.slice(8, 16)}`) * 0x1_0000_0000n +
      BigInt(`0x${segs[0]!.slice(16)}`) * BigInt(MiB);
    scratch = mkdtempSync(join(tmpdir(), "tideline-waldump-par-"));
    const json = tideline("waldump", "--json", pg.walDir);
    assert.equal(json.status, 0, json.stderr);
    records = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as JsonRecord);
  });

  after(async () => {
    await pg?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it("prints pg_waldump's --stats table with 2, 3 and 8 threads, ending where one thread ends", () => {
    const theirs = pgWaldump(["--stats", "-p", pg.walDir, segs[0]!, segs[segs.length - 1]!]);
    const one = tideline("waldump", "--stats", "--jobs", "1", pg.walDir);
    assert.equal(one.status, 0, one.stderr);
    assert.equal(one.stdout, theirs.stdout);
    assert.match(one.stderr, /end of WAL: /);
    for (const jobs of ["2", "3", "8"]) {
      const many = tideline("waldump", "--stats", "--jobs", jobs, pg.walDir);
      assert.equal(many.status, 0, many.stderr);
      assert.equal(many.stdout, theirs.stdout, `--jobs ${jobs}`);
      assert.equal(many.stderr, one.stderr, `--jobs ${jobs}`);
    }
    // The last record counted is the last one there is: the end is in the last range.
    const total = /^Total +(\d+)/m.exec(theirs.stdout);
    assert.equal(Number(total?.[1]), records.length);
  });

  it("--stats --json: the same numbers on one thread and on four", () => {
    const one = tideline("waldump", "--stats", "--json", "--jobs", "1", pg.walDir);
    const four = tideline("waldump", "--stats", "--json", "--jobs", "4", pg.walDir);
    assert.equal(four.status, 0, four.stderr);
    assert.equal(four.stdout, one.stdout);
    assert.equal(JSON.parse(four.stdout).total.count, records.length);
  });

  it("--start and --end: the same table as pg_waldump -s/-e on four threads", () => {
    const start = records[Math.floor(records.length / 5)]!;
    const end = records[Math.floor((records.length * 3) / 5)]!;
    // A start inside a record (not a record boundary), as pg_waldump allows.
    const startAt = parseLsn(start.lsn) + 8n;
    const startText = `${(startAt >> 32n).toString(16).toUpperCase()}/${(startAt & 0xffff_ffffn).toString(16).toUpperCase()}`;
    const theirs = pgWaldump(["--stats", "-p", pg.walDir, "-s", startText, "-e", end.end]);
    // pg_waldump prints its "first record is after" note on stdout; tideline on stderr.
    theirs.stdout = theirs.stdout.replace(/^first record is after .*\n/m, "");
    const one = tideline(
      "waldump",
      "--stats",
      "--jobs",
      "1",
      "-s",
      startText,
      "-e",
      end.end,
      pg.walDir,
    );
    const four = tideline(
      "waldump",
      "--stats",
      "--jobs",
      "4",
      "-s",
      startText,
      "-e",
      end.end,
      pg.walDir,
    );
    assert.equal(one.status, 0, one.stderr);
    assert.equal(four.status, 0, four.stderr);
    assert.equal(one.stdout, theirs.stdout);
    assert.equal(four.stdout, theirs.stdout);
    assert.equal(four.stderr, one.stderr);
    assert.match(four.stderr, /first record is after/);
  });

  it("a damaged byte in a middle range: exit 1 at the same LSN as one thread and pg_waldump", () => {
    const middle = segStart + BigInt(Math.floor(segs.length / 2) * MiB);
    const victim = records.find((r) => {
      const at = parseLsn(r.lsn);
      return at > middle && r.totLen > 64 && Number(at % 8192n) + 64 < 8192;
    });
    assert.ok(victim, "a record to damage");
    const dir = copyWal("crc");
    const { file, offset } = locate(parseLsn(victim.lsn));
    const bytes = readFileSync(join(dir, file));
    bytes[offset + 40]! ^= 0x10;
    writeFileSync(join(dir, file), bytes);

    const theirs = pgWaldump(["--stats", "-p", dir, segs[0]!, segs[segs.length - 1]!]);
    const one = tideline("waldump", "--stats", "--jobs", "1", dir);
    assert.equal(one.status, 1);
    assert.match(one.stderr, new RegExp(`error in WAL: .*${victim.lsn}`));
    assert.equal(one.stdout, theirs.stdout, "the table of what came before, as pg_waldump's");
    for (const jobs of ["2", "4", "8"]) {
      const many = tideline("waldump", "--stats", "--jobs", jobs, dir);
      assert.equal(many.status, 1, `--jobs ${jobs}`);
      assert.equal(many.stderr, one.stderr, `--jobs ${jobs}`);
      assert.equal(many.stdout, one.stdout, `--jobs ${jobs}`);
    }
  });

  it("damage in the part of a record that lies in the next range: its owner reports it", () => {
    // A record that starts in one segment and ends in the next: the next range skips its
    // tail unread, so only the range that owns it can see the damage.
    const spanning = records.find((r) => {
      const a = parseLsn(r.lsn);
      const b = parseLsn(r.end);
      return (
        a > segStart + BigInt(4 * MiB) &&
        (a - segStart) / BigInt(MiB) !== (b - segStart) / BigInt(MiB) &&
        Number((b - segStart) % BigInt(MiB)) > 80 &&
        Number(b % 8192n) > 64
      );
    });
    assert.ok(spanning, "a record spanning two segments");
    const dir = copyWal("tail");
    const end = locate(parseLsn(spanning.end));
    const bytes = readFileSync(join(dir, end.file));
    bytes[end.offset - 16]! ^= 0x01; // inside the record's tail, past the long page header
    writeFileSync(join(dir, end.file), bytes);
    const one = tideline("waldump", "--stats", "--jobs", "1", dir);
    const four = tideline("waldump", "--stats", "--jobs", "4", dir);
    assert.equal(one.status, 1);
    assert.match(one.stderr, new RegExp(`error in WAL: .*${spanning.lsn}`));
    assert.equal(four.status, 1);
    assert.equal(four.stderr, one.stderr);
    assert.equal(four.stdout, one.stdout);
  });

  it("WAL ending in a middle range (zeros after a record): later ranges are not counted", () => {
    const middle = segStart + BigInt(Math.floor(segs.length / 3) * MiB + MiB / 2);
    const cut = records.findIndex((r) => parseLsn(r.lsn) > middle);
    const last = records[cut]!;
    const dir = copyWal("zeros");
    const { file, offset } = locate(parseLsn(last.lsn));
    const bytes = readFileSync(join(dir, file));
    bytes.fill(0, offset);
    writeFileSync(join(dir, file), bytes);
    const theirs = pgWaldump(["--stats", "-p", dir, segs[0]!, segs[segs.length - 1]!]);
    const one = tideline("waldump", "--stats", "--jobs", "1", dir);
    const four = tideline("waldump", "--stats", "--jobs", "4", dir);
    assert.equal(one.status, 0, one.stderr);
    assert.match(one.stderr, new RegExp(`end of WAL: .*${last.lsn}`));
    assert.equal(one.stdout, theirs.stdout);
    assert.equal(four.status, 0, four.stderr);
    assert.equal(four.stderr, one.stderr);
    assert.equal(four.stdout, one.stdout);
    assert.equal(Number(/^Total +(\d+)/m.exec(four.stdout)?.[1]), cut);
  });

  it("rejects a bad --jobs value", () => {
    const r = tideline("waldump", "--stats", "--jobs", "0", pg.walDir);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /"0" is not a thread count/);
  });
});

describe("runParallelStats", () => {
  it("rejects with the error a thread met, after stopping and awaiting its workers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tideline-waldump-par-"));
    try {
      // Files that cannot be opened: an error that is not about WAL, so it is thrown.
      const files = Array.from({ length: 6 }, (_, i) => ({
        path: join(dir, `00000001000000000000000${i + 1}`),
        size: MiB,
      }));
      const ranges = splitRanges(files.length, MiB, BigInt(MiB), 0, 6);
      assert.equal(ranges.length, 6);
      await assert.rejects(runParallelStats({ files, segmentSize: MiB, ranges }, 3), {
        code: "ENOENT",
      });
      // And again: nothing of the first run is left in the way.
      await assert.rejects(runParallelStats({ files, segmentSize: MiB, ranges }, 2), {
        code: "ENOENT",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
