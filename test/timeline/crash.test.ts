/**
 * Crash safety: a child process (`crash-child.ts`) ingests real PostgreSQL 15 WAL into a
 * timeline with small layers and is killed with SIGKILL at seeded random instants (right
 * after it starts, mid-ingest, mid-flush, between a layer file's rename and the index
 * update). After every kill the timeline must reopen at a record end no earlier than
 * before and no earlier than any flush the child saw complete, hold exactly the source's
 * bytes below it, list contiguous layers and nothing else; and a last run to completion
 * must leave exactly the source: no gap, no duplicate.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseLayerFileName, readTimelineIndex, Timeline } from "../../src/timeline/index.js";
import { formatLsn, WalDecoder } from "../../src/wal/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { prng, testContext, useWalSource, type WalSource } from "./source.js";

const CHILD = fileURLToPath(new URL("./crash-child.js", import.meta.url));
const LAYER_SIZE = 128 << 10;
const ID = "crash";

/** A few MB of WAL over several 1 MiB segments, with a checkpoint, FPIs, a switch, a vacuum. */
const WORKLOAD = [
  "CREATE TABLE t (id int PRIMARY KEY, v text)",
  "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 8000) g",
  "CHECKPOINT",
  "UPDATE t SET v = 'y' WHERE id % 5 = 0",
  "SELECT pg_switch_wal()",
  "DELETE FROM t WHERE id % 7 = 0",
  "VACUUM t",
];

const ctx = testContext;

/** How the parent decides when to kill a child. */
type KillPlan =
  | { kind: "at-spawn" }
  | { kind: "after-lines"; lines: number }
  | { kind: "on-line"; prefix: string; nth: number }
  /** Counted from the child's first line (it has opened the timeline). */
  | { kind: "after-ms"; ms: number }
  | { kind: "never" };

interface ChildRun {
  lines: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

const live = new Set<ChildProcess>();

/** Runs the child with `config`, killing it with SIGKILL per `plan`; resolves once it has exited. */
function runChild(configFile: string, plan: KillPlan): Promise<ChildRun> {
  const child = spawn(process.execPath, ["--enable-source-maps", CHILD, configFile], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  const lines: string[] = [];
  let stderr = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  let seen = 0;
  createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(line);
    // A delay counts from the moment the child has opened the timeline (startup varies).
    if (plan.kind === "after-ms" && lines.length === 1) timer = setTimeout(kill, plan.ms);
    if (plan.kind === "after-lines" && lines.length >= plan.lines) kill();
    if (plan.kind === "on-line" && line.startsWith(plan.prefix) && ++seen >= plan.nth) kill();
  });
  if (plan.kind === "at-spawn") kill();
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    // "close": the process has exited and its output has been read to the end.
    child.on("close", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      live.delete(child);
      resolve({ lines, code, signal, stderr });
    });
  });
}

/** The last LSN a line with `prefix` reported (hex after the prefix), if any. */
function lastReported(lines: string[], prefix: string): bigint | undefined {
  let out: bigint | undefined;
  for (const l of lines) if (l.startsWith(`${prefix} `)) out = BigInt(`0x${l.split(" ")[1]}`);
  return out;
}

describe("Timeline crash safety (SIGKILL at random instants)", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  let srcFile: string;
  let recordEnds: Set<bigint>;
  /**
   * Every record's padding: from the end of its bytes to its end (EndRecPtr: 8-aligned; for a
   * switch, its segment's end). A layer may be cut there, so diskConsistentLsn may lie there.
   */
  let paddings: { from: bigint; to: bigint }[];

  useWalSource(
    WORKLOAD,
    "crash",
    (s) => {
      ({ src, dir } = s);
      srcFile = join(dir, "source.wal");
      writeFileSync(srcFile, src.bytes);
      recordEnds = new Set(src.records.map((r) => r.end));
      paddings = [];
      const dec = new WalDecoder({ startLsn: src.start, segmentSize: src.segmentSize });
      dec.push(src.bytes);
      dec.end();
      for (let r = dec.next(); r !== undefined; r = dec.next()) {
        // lsn + totLen: the bytes' end, or before it when the record crosses a page header.
        paddings.push({ from: r.lsn + BigInt(r.totLen), to: r.end });
      }
    },
    () => {
      for (const child of live) child.kill("SIGKILL");
    },
  );

  function writeConfig(dataDir: string, name: string, seed: number, pauseAfterLayer?: number) {
    const file = join(dir, `${name}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        dataDir,
        id: ID,
        srcFile,
        start: src.start.toString(16),
        segmentSize: src.segmentSize,
        layerSize: LAYER_SIZE,
        seed,
        ...(pauseAfterLayer !== undefined ? { pauseAfterLayer } : {}),
      }),
    );
    return file;
  }

  function inPadding(lsn: bigint): boolean {
    let lo = 0;
    let hi = paddings.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (paddings[mid]!.to < lsn) lo = mid + 1;
      else hi = mid;
    }
    const p = paddings[lo];
    return p !== undefined && lsn >= p.from && lsn <= p.to;
  }

  function failed(run: ChildRun): string {
    return `child exited with code ${run.code}, signal ${run.signal}\n${run.stderr}\nlast lines: ${run.lines.slice(-5).join(" | ")}`;
  }

  /**
   * Reopens the timeline after a child ended and checks everything a crash must leave
   * intact. Returns its diskConsistentLsn.
   */
  async function checkReopen(
    dataDir: string,
    previous: bigint,
    durable: bigint | undefined,
    what: string,
  ): Promise<{ dcl: bigint; discarded: string[] }> {
    const tlDir = join(dataDir, "timelines", ID);
    if (!Timeline.exists(dataDir, ID)) {
      // Killed before create() wrote its index: nothing can have been durable.
      assert.equal(previous, src.start, `${what}: the timeline vanished`);
      assert.equal(durable, undefined, `${what}: a flush completed, yet no timeline`);
      return { dcl: src.start, discarded: [] };
    }
    // What a crash left behind that the index does not list (torn, half-renamed, temp).
    const listedBefore = new Set(
      (await readTimelineIndex(join(tlDir, "index.json"))).layers.map((l) => l.file),
    );
    const strays = [
      ...(existsSync(join(tlDir, "layers"))
        ? readdirSync(join(tlDir, "layers")).filter((n) => !listedBefore.has(n))
        : []),
      ...readdirSync(tlDir).filter((n) => n !== "index.json" && n !== "layers"),
    ];

    const tl = await Timeline.open({ dataDir, id: ID, layerSize: LAYER_SIZE });
    try {
      const dcl = tl.diskConsistentLsn;
      const at = `${what}: diskConsistentLsn ${formatLsn(dcl)}`;
      assert.ok(dcl >= previous, `${at} went backwards from ${formatLsn(previous)}`);
      if (durable !== undefined)
        assert.ok(dcl >= durable, `${at} lost a completed flush up to ${formatLsn(durable)}`);
      // A record end, or inside a record's padding (it streams in after the record's bytes).
      assert.ok(
        dcl === src.start || recordEnds.has(dcl) || inPadding(dcl),
        `${at} is neither a record end nor inside a record's padding`,
      );
      assert.equal(tl.lastRecordLsn, dcl, `${at}: lastRecordLsn differs`);
      assert.equal(tl.streamEnd, dcl, `${at}: the stream resumes elsewhere`);

      // Only listed files remain; no temp files.
      const index = await readTimelineIndex(join(tlDir, "index.json"));
      const listed = index.layers.map((l) => l.file).sort();
      assert.deepEqual(
        readdirSync(join(tlDir, "layers")).sort(),
        listed,
        `${at}: unlisted files remain`,
      );
      assert.deepEqual(
        readdirSync(tlDir)
          .filter((n) => n !== "writer.lock") // held by this process's open timeline
          .sort(),
        ["index.json", "layers"],
        `${at}: temp files remain`,
      );

      // Contiguous layers from the start to diskConsistentLsn, as the index says.
      let expect = src.start;
      for (const [i, l] of tl.layerFiles.entries()) {
        assert.equal(l.start, expect, `${at}: layer ${i} does not continue the previous one`);
        assert.ok(l.end > l.start);
        assert.deepEqual(parseLayerFileName(listed[i]!), { start: l.start, end: l.end });
        expect = l.end;
      }
      assert.equal(expect, dcl, `${at}: layers end elsewhere`);
      assert.equal(index.diskConsistentLsn, dcl);

      const bytes = await tl.readWal(src.start, dcl, ctx());
      assert.ok(
        bytes.equals(src.bytes.subarray(0, Number(dcl - src.start))),
        `${at}: WAL below it differs from the source`,
      );
      return { dcl, discarded: strays };
    } finally {
      await tl.shutdown("hard");
    }
  }

  /** Runs a child to completion and checks that the timeline holds exactly the source. */
  async function finish(dataDir: string, previous: bigint, seed: number): Promise<string> {
    const t0 = Date.now();
    const run = await runChild(writeConfig(dataDir, "final", seed), { kind: "never" });
    const took = Date.now() - t0;
    assert.equal(run.code, 0, failed(run));
    const done = lastReported(run.lines, "done");
    assert.equal(done, src.end, "the last run ends at the source's end");
    const { dcl } = await checkReopen(dataDir, previous, done, "final");
    assert.equal(dcl, src.end);

    const tl = await Timeline.open({ dataDir, id: ID, readOnly: true });
    try {
      // No gap, no duplicate: every record exactly once, in order.
      const lsns: string[] = [];
      for await (const r of tl.records(src.start, src.end, ctx())) lsns.push(r.lsn);
      assert.equal(lsns.length, src.records.length, "record count");
      assert.deepEqual(
        lsns,
        src.records.map((r) => formatLsn(r.lsn)),
      );
      const index = await readTimelineIndex(join(dataDir, "timelines", ID, "index.json"));
      assert.equal(
        index.layers.reduce((n, l) => n + l.records, 0),
        src.records.length,
        "the layers' record counts add up to the source's",
      );
    } finally {
      await tl.shutdown("hard");
    }
    return `final run from ${formatLsn(previous)}: ${run.lines.length} lines in ${took} ms; source ${src.bytes.length} bytes, ${src.records.length} records, ${src.segments.length} segments`;
  }

  it("reopens intact after SIGKILL at random instants, then completes with exactly the source", {
    timeout: 120_000,
  }, async (t) => {
    const dataDir = join(dir, "random");
    const rnd = prng(0x7d1e1);
    let dcl = src.start;
    let killedMidWay = 0;
    const kinds: KillPlan["kind"][] = [];
    const discarded: string[] = [];
    for (let round = 0; round < 14; round++) {
      // Round 0 dies before it can do anything; then a seeded mix.
      const r = rnd();
      const plan: KillPlan =
        round === 0
          ? { kind: "at-spawn" }
          : r < 0.2
            ? { kind: "on-line", prefix: "open", nth: 1 }
            : r < 0.45
              ? { kind: "after-lines", lines: 1 + Math.floor(rnd() * 120) }
              : r < 0.75
                ? {
                    kind: "on-line",
                    // Mid layer write; right after a flush began; right after one completed
                    // (is it durable?); right after a layer file is in place, index not yet.
                    prefix: (["layer-start", "flush ", "flushed ", "layer-done"] as const)[
                      Math.floor(rnd() * 4)
                    ]!,
                    nth: 1 + Math.floor(rnd() * 6),
                  }
                : { kind: "after-ms", ms: Math.floor(rnd() * 150) };
      kinds.push(plan.kind);
      const run = await runChild(writeConfig(dataDir, `round${round}`, 1000 + round), plan);
      if (run.signal !== "SIGKILL") assert.equal(run.code, 0, failed(run));
      else killedMidWay++;
      const durable = lastReported(run.lines, "flushed") ?? lastReported(run.lines, "done");
      const opened = lastReported(run.lines, "open");
      if (opened !== undefined)
        assert.equal(opened, dcl, `round ${round}: child resumed elsewhere`);
      const result = await checkReopen(dataDir, dcl, durable, `round ${round} (${plan.kind})`);
      discarded.push(...result.discarded);
      dcl = result.dcl;
      t.diagnostic(
        `round ${round}: ${JSON.stringify(plan)} -> ${run.signal ?? `exit ${run.code}`} after ${run.lines.length} lines; diskConsistentLsn ${formatLsn(dcl)}; discarded ${result.discarded.join(",") || "nothing"}`,
      );
    }
    assert.ok(killedMidWay >= 5, `most rounds were really killed (${killedMidWay})`);
    t.diagnostic(`discarded across rounds: ${discarded.length} files`);
    t.diagnostic(await finish(dataDir, dcl, 99));
  });

  it("a kill between a layer file's rename and the index update: the file is discarded, ingest resumes before it", {
    timeout: 60_000,
  }, async (t) => {
    const dataDir = join(dir, "between");
    const rnd = prng(42);
    let dcl = src.start;
    for (let round = 0; round < 3; round++) {
      const nth = 1 + Math.floor(rnd() * 4);
      const config = writeConfig(dataDir, `between${round}`, 2000 + round, nth);
      const run = await runChild(config, { kind: "on-line", prefix: "layer-written", nth: 1 });
      assert.equal(run.signal, "SIGKILL", failed(run));
      const written = run.lines.find((l) => l.startsWith("layer-written "))?.split(" ")[1];
      assert.ok(written, "the child wrote a layer and paused");
      const range = parseLayerFileName(written);
      assert.ok(range, `${written} is a layer file name`);
      const layers = join(dataDir, "timelines", ID, "layers");
      assert.ok(existsSync(join(layers, written)), "the renamed file is in place");
      const index = await readTimelineIndex(join(dataDir, "timelines", ID, "index.json"));
      assert.ok(!index.layers.some((l) => l.file === written), "the index does not list it yet");
      const before = index.diskConsistentLsn;
      // Two layer files are written at a time (a third starts while the one before is
      // listed), and they may finish out of order: the unlisted files are the paused one and
      // at most two others, all at or after the index end; a layer between them may still
      // be a temporary file (checkReopen checks that nothing unlisted survives a reopen).
      const unlisted = readdirSync(layers)
        .filter((n) => n.endsWith(".layer") && !index.layers.some((l) => l.file === n))
        .map((n) => ({ name: n, ...parseLayerFileName(n)! }))
        .sort((a, b) => (a.start < b.start ? -1 : 1));
      assert.ok(unlisted.length >= 1 && unlisted.length <= 3, `unlisted: ${unlisted.length}`);
      for (const u of unlisted)
        assert.ok(u.start >= before, `${u.name} lies at or after the index end ${before}`);
      assert.ok(
        unlisted.some((u) => u.name === written),
        "the paused one is among them",
      );

      const result = await checkReopen(
        dataDir,
        dcl,
        lastReported(run.lines, "flushed"),
        `between ${round}`,
      );
      for (const u of unlisted) {
        assert.ok(!existsSync(join(layers, u.name)), "every unlisted layer file was discarded");
        assert.ok(result.discarded.includes(u.name));
      }
      assert.equal(result.dcl, before, "resumes at the previous diskConsistentLsn");
      t.diagnostic(
        `round ${round}: paused after layer ${nth} (${written}); resumed at ${formatLsn(result.dcl)}`,
      );
      dcl = result.dcl;
    }
    t.diagnostic(await finish(dataDir, dcl, 77));
  });
});
