import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  DiskLayer,
  exportSegments,
  LayerCorruptError,
  Timeline,
  TimelineInUseError,
  writeLayerFile,
} from "../../src/timeline/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { pieces, prng, testContext, useWalSource, type WalSource } from "./source.js";

const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
  "CHECKPOINT",
  "UPDATE t SET v = 'y' WHERE id % 10 = 0",
  "SELECT pg_switch_wal()",
  "DELETE FROM t WHERE id % 7 = 0",
  "VACUUM t",
];

const ctx = testContext;

describe("Timeline on real PostgreSQL 15 WAL", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;

  useWalSource(WORKLOAD, "tl", (s) => {
    ({ src, dir } = s);
  });

  async function ingestAll(tl: Timeline, seed: number, from = tl.streamEnd, to = src.end) {
    const c = ctx();
    for (const p of pieces(src, from, to, prng(seed))) await tl.ingest(p.lsn, p.bytes, c);
  }

  it("ingests WAL in random pieces: LSNs, layers, reads and records match the source", async () => {
    const dataDir = join(dir, "basic");
    const tl = await Timeline.create({
      dataDir,
      id: "main",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 256 << 10,
    });
    await ingestAll(tl, 1);
    assert.equal(tl.lastRecordLsn, src.end, "lastRecordLsn is the end of the last record");
    assert.equal(tl.pgVersion, 15);
    assert.notEqual(tl.systemId, 0n);
    await tl.flush(ctx());
    assert.equal(tl.diskConsistentLsn, src.end);
    assert.ok(tl.layerFiles.length > 5, `several layers: ${tl.layerFiles.length}`);

    const c = ctx();
    const all = await tl.readWal(src.start, src.end, c);
    assert.ok(all.equals(src.bytes), "raw WAL is byte-exact");
    const mid = src.start + BigInt(src.bytes.length >> 1);
    const piece = await tl.readWal(mid - 5000n, mid + 70_000n, c);
    assert.ok(
      piece.equals(
        src.bytes.subarray(Number(mid - 5000n - src.start), Number(mid + 70_000n - src.start)),
      ),
    );

    const from = src.records[100]!.lsn;
    const to = src.records[2100]!.lsn;
    const got: string[] = [];
    for await (const r of tl.records(from, to, c)) got.push(r.lsn);
    assert.equal(got.length, 2000);
    assert.equal(got[0], `0/${from.toString(16).toUpperCase()}`);

    const result = await tl.shutdown("freeze-and-flush");
    assert.equal(result.diskConsistentLsn, src.end);
    assert.equal(result.lastRecordLsn, src.end);
  });

  it("a written layer file, as writeLayerFile returns it, equals the file opened from disk", async () => {
    const written: Awaited<ReturnType<typeof writeLayerFile>>[] = [];
    const tl = await Timeline.create({
      dataDir: join(dir, "written"),
      id: "main",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 1 << 20,
      writeLayer: async (...args) => {
        const w = await writeLayerFile(...args);
        written.push(w);
        return w;
      },
    });
    await ingestAll(tl, 7);
    await tl.shutdown("freeze-and-flush");
    assert.ok(written.length > 2);
    for (const w of written) {
      const mine = w.layer!;
      const opened = await DiskLayer.open(mine.path);
      assert.equal(mine.fileSize, opened.fileSize);
      assert.equal(mine.fileSize, w.size);
      assert.deepEqual([mine.start, mine.end, mine.meta], [opened.start, opened.end, opened.meta]);
      assert.deepEqual(mine.records, opened.records);
      assert.deepEqual(mine.blocks, opened.blocks);
      assert.ok(
        (await mine.read(mine.start, mine.end)).equals(await opened.read(mine.start, mine.end)),
      );
    }
  });

  it("block history: the newest base image at or before the LSN, then every later record", async () => {
    const tl = await Timeline.open({ dataDir: join(dir, "basic"), id: "main" });
    try {
      // The block touched most often.
      const counts = new Map<string, number>();
      for (const r of src.records)
        for (const b of r.blocks) counts.set(b, (counts.get(b) ?? 0) + 1);
      const [key] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
      const [spc, db, rel, fork, blk] = key.split("/").map(Number) as [
        number,
        number,
        number,
        number,
        number,
      ];
      const touching = src.records.filter((r) => r.blocks.includes(key));
      const upTo = touching[Math.floor(touching.length * 0.8)]!.lsn;
      const history = await tl.blockHistory({ spc, db, rel, fork, blk }, upTo, ctx());
      assert.ok(history.records.length > 0);
      const last = history.records[history.records.length - 1]!;
      assert.equal(last.lsn, `0/${upTo.toString(16).toUpperCase()}`);
      for (const r of history.records) {
        assert.ok(
          r.blocks.some((b) => b.rel === `${spc}/${db}/${rel}` && b.blk === blk),
          `${r.lsn} touches the block`,
        );
      }
      if (history.hasBaseImage) {
        const first = history.records[0]!;
        assert.ok(
          first.blocks.some((b) => b.rel === `${spc}/${db}/${rel}` && b.blk === blk && b.fpw) ||
            first.type.includes("INIT"),
        );
        // No later record in the answer carries a newer image of it.
        for (const r of history.records.slice(1)) {
          assert.ok(
            !r.blocks.some((b) => b.rel === `${spc}/${db}/${rel}` && b.blk === blk && b.fpw),
            `${r.lsn} has a newer image`,
          );
        }
      }
      // Every touching record between the base and upTo is there, in order.
      const expected = touching.filter((r) => r.lsn <= upTo);
      const tail = expected
        .slice(expected.length - history.records.length)
        .map((r) => `0/${r.lsn.toString(16).toUpperCase()}`);
      assert.deepEqual(
        history.records.map((r) => r.lsn),
        tail,
      );
    } finally {
      await tl.shutdown("hard");
    }
  });

  it("reopens after a clean stop at diskConsistentLsn and exports segments byte for byte", async () => {
    const tl = await Timeline.open({ dataDir: join(dir, "basic"), id: "main" });
    assert.equal(tl.diskConsistentLsn, src.end);
    assert.equal(tl.lastRecordLsn, src.end);
    const out = join(dir, "export");
    mkdirSync(out, { recursive: true });
    const { files } = await exportSegments(tl, out, {}, ctx());
    await tl.shutdown("hard");
    const whole = files.filter((f) => !f.endsWith(".partial"));
    assert.ok(whole.length >= 2);
    for (const name of whole) {
      const source = src.segments.find((s) => s.name === name);
      assert.ok(source, `${name} exists in pg_wal`);
      assert.ok(readFileSync(join(out, name)).equals(source.bytes), `${name} is byte-exact`);
    }
    const partial = files.find((f) => f.endsWith(".partial"));
    assert.ok(partial, "the last, incomplete segment is .partial");
    const bytes = readFileSync(join(out, partial));
    assert.equal(bytes.length, src.segmentSize);
    const source = src.segments.find((s) => s.name === partial.replace(".partial", ""))!;
    const used = Number((src.end - src.start) % BigInt(src.segmentSize));
    assert.ok(bytes.subarray(0, used).equals(source.bytes.subarray(0, used)));
    assert.ok(
      bytes.subarray(used).every((b) => b === 0),
      "zero-padded",
    );
  });

  it("resumes ingest after a restart, then holds exactly the source", async () => {
    const dataDir = join(dir, "resume");
    let tl = await Timeline.create({
      dataDir,
      id: "r",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 128 << 10,
    });
    const stopAt = src.records[Math.floor(src.records.length / 2)]!.end + 1000n; // mid-record
    await ingestAll(tl, 7, src.start, stopAt);
    await tl.shutdown("freeze-and-flush");
    tl = await Timeline.open({ dataDir, id: "r", layerSize: 128 << 10 });
    assert.ok(tl.diskConsistentLsn < stopAt);
    await ingestAll(tl, 8, tl.diskConsistentLsn);
    assert.equal(tl.lastRecordLsn, src.end);
    assert.ok((await tl.readWal(src.start, src.end, ctx())).equals(src.bytes));
    await tl.shutdown("freeze-and-flush");
  });

  it("discards layer files the index does not list, and refuses damaged listed ones", async () => {
    const dataDir = join(dir, "basic");
    const layers = join(dataDir, "timelines", "main", "layers");
    writeFileSync(join(layers, "00000000FF000000-00000000FF100000.layer"), "torn");
    writeFileSync(join(layers, "junk.layer.tmp"), "half");
    const tl = await Timeline.open({ dataDir, id: "main" });
    assert.deepEqual(
      readdirSync(layers).filter((n) => !n.endsWith(".layer") || n.startsWith("00000000FF")),
      [],
    );
    await tl.shutdown("hard");
    const victim = join(layers, readdirSync(layers).sort()[0]!);
    const bytes = readFileSync(victim);
    bytes[bytes.length - 40]! ^= 1; // inside the metadata
    writeFileSync(victim, bytes);
    await assert.rejects(Timeline.open({ dataDir, id: "main" }), LayerCorruptError);
  });

  it("rejects WAL that does not continue the stream, and bad ids", async () => {
    const tl = await Timeline.create({
      dataDir: join(dir, "misc"),
      id: "m",
      startLsn: src.start,
      segmentSize: src.segmentSize,
    });
    await assert.rejects(tl.ingest(src.start + 8192n, Buffer.alloc(10), ctx()), /expects WAL at/);
    await tl.shutdown("hard");
    await assert.rejects(
      Timeline.create({ dataDir: dir, id: "../x", startLsn: 0n }),
      /Invalid timeline id "\.\.\/x"/,
    );
  });

  it("admits one writer at a time; readers freely; a dead writer's lock is taken over", async () => {
    const dataDir = join(dir, "lock");
    const tl = await Timeline.create({
      dataDir,
      id: "l",
      startLsn: src.start,
      segmentSize: src.segmentSize,
    });
    await assert.rejects(
      Timeline.open({ dataDir, id: "l" }),
      (e: unknown) =>
        e instanceof TimelineInUseError &&
        e.pid === process.pid &&
        /open for writing by process/.test(e.message),
    );
    const reader = await Timeline.open({ dataDir, id: "l", readOnly: true });
    await reader.shutdown("hard");
    await tl.shutdown("hard");
    // A lock left by a process that died (kill -9) does not block the next writer.
    const dead = spawnSync(process.execPath, ["-e", "console.log(process.pid)"], {
      encoding: "utf8",
    });
    writeFileSync(join(dataDir, "timelines", "l", "writer.lock"), `${dead.stdout.trim()}\n`);
    const next = await Timeline.open({ dataDir, id: "l" });
    await next.shutdown("hard");
  });

  it("compresses layer files (lz4; zstd where Node.js has it) and reads them back byte-exact", async () => {
    const zstdAvailable =
      typeof ((await import("node:zlib")) as Record<string, unknown>).zstdCompress === "function";
    for (const compression of ["lz4", "zstd"] as const) {
      const dataDir = join(dir, `compressed-${compression}`);
      if (compression === "zstd" && !zstdAvailable) {
        await assert.rejects(
          Timeline.create({
            dataDir,
            id: "z",
            startLsn: src.start,
            segmentSize: src.segmentSize,
            compression,
          }),
          /needs Node\.js 22\.15/,
        );
        continue;
      }
      const tl = await Timeline.create({
        dataDir,
        id: "z",
        startLsn: src.start,
        segmentSize: src.segmentSize,
        layerSize: 256 << 10,
        compression,
      });
      await ingestAll(tl, 21);
      await tl.shutdown("freeze-and-flush");
      const onDisk = tl.layerFiles.reduce((n, l) => n + l.size, 0);
      assert.ok(
        onDisk < src.bytes.length * 0.8,
        `${compression}: ${onDisk} bytes on disk for ${src.bytes.length} of WAL`,
      );
      const reopened = await Timeline.open({ dataDir, id: "z", readOnly: true });
      assert.ok(
        (await reopened.readWal(src.start, src.end, ctx())).equals(src.bytes),
        `${compression}: byte-exact`,
      );
      let n = 0;
      for await (const _ of reopened.records(src.start, src.end, ctx())) n++;
      assert.equal(n, src.records.length);
      await reopened.shutdown("hard");
    }
    await assert.rejects(
      Timeline.create({
        dataDir: join(dir, "bad"),
        id: "b",
        startLsn: src.start,
        compression: "gzip" as never,
      }),
      /Unknown layer compression "gzip"/,
    );
  });
});
