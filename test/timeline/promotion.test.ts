/**
 * WAL across a PostgreSQL timeline switch (a promotion): a throwaway PostgreSQL 15 cluster
 * writes WAL on timeline 1, is restarted as a standby and promoted to timeline 2, then
 * writes more. Its pg_wal then has segments of both timelines and `00000002.history`.
 * The timeline is fed the WAL as a WAL receiver following the switch would get it, and
 * must hold it byte for byte; `export` must write what pg_wal has: each segment under its
 * own timeline's name, and the `.history` file (issue 4: "names as in pg_wal; ... `.history`
 * files for timeline switches").
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { exportSegments, Timeline } from "../../src/timeline/index.js";
import { parseSegmentFileName, WalDecodeError, WalDecoder } from "../../src/wal/index.js";
import { HAVE_PG15, startCluster } from "../support/postgres.js";
import { pieces, prng, testContext, type WalSource } from "./source.js";

const SEGMENT = 1 << 20;

const ctx = testContext;

interface PromotedWal {
  /** What a WAL receiver following the switch streams: per segment, the newest timeline's file. */
  source: WalSource;
  /** pg_wal after the stop: file name -> bytes (segments of both timelines, history files). */
  pgWal: Map<string, Buffer>;
}

async function makePromotedWal(): Promise<PromotedWal> {
  const pg = await startCluster({
    walSegmentSizeMiB: 1,
    settings: { wal_level: "replica", wal_keep_size: "1GB", max_wal_size: "1GB" },
  });
  try {
    await pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    await pg.sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g");
    await pg.stopServer();
    const signal = join(pg.dataDir, "standby.signal");
    writeFileSync(signal, "");
    if (process.getuid?.() === 0) {
      const id = (flag: string) =>
        Number(spawnSync("id", [flag, "postgres"], { encoding: "utf8" }).stdout.trim());
      chownSync(signal, id("-u"), id("-g"));
    }
    await pg.run("pg_ctl", [
      "-D",
      pg.dataDir,
      "-l",
      join(pg.dir, "server.log"),
      "-w",
      "-t",
      "60",
      "start",
    ]);
    pg.markRunning();
    await pg.run("pg_ctl", ["-D", pg.dataDir, "-w", "-t", "60", "promote"]);
    await pg.sql("INSERT INTO t SELECT g, repeat('y', 200) FROM generate_series(3001, 6000) g");
    await pg.sql("UPDATE t SET v = 'z' WHERE id % 4 = 0");
    await pg.stopServer();

    const pgWal = new Map<string, Buffer>();
    for (const name of readdirSync(pg.walDir).sort()) {
      if (/^[0-9A-F]{24}$/.test(name) || /^[0-9A-F]{8}\.history$/.test(name))
        pgWal.set(name, readFileSync(join(pg.walDir, name)));
    }
    // Per segment number, the file of the newest timeline.
    const bySegno = new Map<bigint, { name: string; tli: number }>();
    for (const name of pgWal.keys()) {
      const seg = parseSegmentFileName(name, SEGMENT);
      if (seg === undefined) continue;
      const prev = bySegno.get(seg.segno);
      if (prev === undefined || prev.tli < seg.timeline)
        bySegno.set(seg.segno, { name, tli: seg.timeline });
    }
    const segnos = [...bySegno.keys()].sort((a, b) => (a < b ? -1 : 1));
    for (const [i, s] of segnos.entries()) assert.equal(s, segnos[0]! + BigInt(i));
    const segments = segnos.map((s) => {
      const name = bySegno.get(s)!.name;
      return { name, bytes: pgWal.get(name)! };
    });
    const all = Buffer.concat(segments.map((s) => s.bytes));
    const start = segnos[0]! * BigInt(SEGMENT);
    const dec = new WalDecoder({ startLsn: start, segmentSize: SEGMENT });
    dec.push(all);
    dec.end();
    const records: WalSource["records"] = [];
    try {
      for (let r = dec.next(); r !== undefined; r = dec.next())
        records.push({ lsn: r.lsn, end: r.end, blocks: [] });
    } catch (error) {
      if (!(error instanceof WalDecodeError && error.endOfWal)) throw error;
    }
    const end = records.at(-1)!.end;
    return {
      source: {
        bytes: all.subarray(0, Number(end - start)),
        start,
        end,
        segmentSize: SEGMENT,
        segments,
        records,
      },
      pgWal,
    };
  } finally {
    await pg.stop();
  }
}

describe("Timeline across a PostgreSQL timeline switch (promotion)", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let wal: PromotedWal;
  let src: WalSource;
  let dir: string;
  let dataDir: string;

  before(async () => {
    wal = await makePromotedWal();
    src = wal.source;
    dir = mkdtempSync(join(tmpdir(), "tideline-promotion-"));
    dataDir = join(dir, "data");
    assert.ok(wal.pgWal.has("00000002.history"), "the promotion wrote 00000002.history");
    assert.ok(
      src.segments.some((s) => s.name.startsWith("00000001")) &&
        src.segments.some((s) => s.name.startsWith("00000002")),
      `segments of both timelines: ${src.segments.map((s) => s.name).join(" ")}`,
    );
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ingests the WAL across the switch byte for byte, every record once", async () => {
    const tl = await Timeline.create({
      dataDir,
      id: "p",
      startLsn: src.start,
      segmentSize: SEGMENT,
      layerSize: 256 << 10,
    });
    try {
      const c = ctx();
      for (const p of pieces(src, src.start, src.end, prng(11))) await tl.ingest(p.lsn, p.bytes, c);
      assert.equal(tl.lastRecordLsn, src.end);
      assert.equal(tl.pgTimeline, 2);
      await tl.flush(c);
      assert.ok((await tl.readWal(src.start, src.end, c)).equals(src.bytes));
      let n = 0;
      for await (const _ of tl.records(src.start, src.end, c)) n++;
      assert.equal(n, src.records.length);
    } finally {
      await tl.shutdown("freeze-and-flush");
    }
  });

  it("export names each segment as pg_wal does and writes the .history file", async () => {
    const tl = await Timeline.open({ dataDir, id: "p", readOnly: true });
    const out = join(dir, "export");
    mkdirSync(out, { recursive: true });
    try {
      await exportSegments(tl, out, {}, ctx());
    } finally {
      await tl.shutdown("hard");
    }
    const written = readdirSync(out).sort();
    // Whole segments (those ending at or before the end of the WAL): pg_wal's names, byte for byte.
    // pg_wal may also hold a preallocated segment past the end: it is not part of the WAL.
    const endSeg = Number((src.end - 1n - src.start) / BigInt(SEGMENT));
    const whole = src.segments.slice(0, endSeg).map((s) => s.name);
    for (const name of whole) {
      assert.ok(written.includes(name), `${name} exported (got ${written.join(" ")})`);
      assert.ok(readFileSync(join(out, name)).equals(wal.pgWal.get(name)!), `${name} byte-exact`);
    }
    if (src.end % BigInt(SEGMENT) !== 0n)
      assert.ok(written.includes(`${src.segments[endSeg]!.name}.partial`));
    const history = readFileSync(join(out, "00000002.history"), "utf8");
    const entries = (text: string) =>
      text
        .split("\n")
        .filter((l) => l.trim() !== "" && !l.startsWith("#"))
        .map((l) => l.split("\t").slice(0, 2).join("\t"));
    assert.deepEqual(
      entries(history),
      entries(wal.pgWal.get("00000002.history")!.toString("utf8")),
    );
  });
});
