/**
 * `tideline export --remote`: segment files straight from remote storage (S3 on s3rver),
 * byte for byte as in the primary's pg_wal, also when the data dir is gone or a layer of it
 * was evicted (where `--data-dir` says to use `--remote`).
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { CancellationToken, RequestContext, TaskKind } from "../../src/lifecycle/index.js";
import { RemoteLayerFetcher, RemoteUploader } from "../../src/remote/index.js";
import type { S3Storage } from "../../src/remote/s3_storage.js";
import type { Timeline } from "../../src/timeline/index.js";
import { formatLsn, parseLsn, segmentStart } from "../../src/wal/index.js";
import { PITR_SKIP, startArchivedCluster, startArchiving, TIDELINE_BIN } from "../support/pitr.js";
import type { Cluster } from "../support/postgres.js";
import { BUCKET, FaultProxy, S3_CREDENTIALS, type S3Server, startS3Server } from "../support/s3.js";

const SEG = 1 << 20;

async function tideline(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [TIDELINE_BIN, ...args], {
      encoding: "utf8",
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
      },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

describe("tideline export --remote", { skip: PITR_SKIP }, () => {
  let pg: Cluster;
  let s3: S3Server;
  let storage: S3Storage;
  let work: string;
  let url: string;
  let timeline: Timeline | undefined;
  let evicted: string;
  let end: bigint;

  before(async () => {
    [pg, s3] = await Promise.all([startArchivedCluster(), startS3Server()]);
    storage = s3.storage("export");
    url = s3.url("export");
    work = mkdtempSync(join(tmpdir(), "tideline-export-remote-"));

    // Stream a few segments into a timeline that uploads every layer, then evict one.
    const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
    timeline = await startArchiving(
      pg,
      join(work, "data"),
      { layerSize: 256 << 10, layerFetcher: new RemoteLayerFetcher(storage) },
      (tl) => RemoteUploader.start(tl, storage, { retry: { minMs: 20, factor: 2, maxMs: 500 } }),
    );
    await pg.sql(`
      CREATE TABLE t (id int PRIMARY KEY, v text);
      INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 12000) g;
    `);
    await pg.switchWal();
    end = parseLsn(await pg.sql("SELECT pg_current_wal_lsn()"));
    await timeline.waitLsn(end, ctx, { timeoutMs: 30_000 });
    for (let i = 0; i < 600 && timeline.remoteConsistentLsn < end; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(timeline.remoteConsistentLsn >= end, "uploaded");
    const first = timeline.layerFiles[1]!;
    assert.equal(timeline.evictLayer(first.file), "evicted");
    evicted = first.file;
    await timeline.shutdown("freeze-and-flush");
    timeline = undefined;
  });

  after(async () => {
    await timeline?.shutdown("hard");
    await pg?.stop();
    storage?.destroy();
    await s3?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Whole segments written to `out`, each equal to pg_wal's file of that name. */
  function assertSegmentsEqualPgWal(out: string): string[] {
    const whole = readdirSync(out).filter((f) => /^[0-9A-F]{24}$/.test(f));
    for (const name of whole) {
      assert.ok(
        readFileSync(join(out, name)).equals(readFileSync(join(pg.walDir, name))),
        `${name} equals pg_wal/${name}`,
      );
    }
    return whole;
  }

  it("from a data dir with an evicted layer: refuses, naming the layer and --remote", async () => {
    const r = await tideline([
      "export",
      "--data-dir",
      join(work, "data"),
      "--timeline",
      "main",
      "--out",
      join(work, "from-data-dir"),
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`layer ${evicted.replace(".", "\\.")} is not in the data dir`),
    );
    assert.match(r.stderr, /--remote URL/);
    assert.equal(existsSync(join(work, "data", "timelines", "main", "layers", evicted)), false);
  });

  it("from remote storage alone: every whole segment equals pg_wal, no scratch left", async () => {
    const out = join(work, "all");
    const r = await tideline(["export", "--remote", url, "--timeline", "main", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /exported \d+ segment file\(s\) of timeline "main"/);
    const whole = assertSegmentsEqualPgWal(out);
    assert.ok(whole.length >= 3, `${whole.length} whole segments`);
    assert.deepEqual(
      readdirSync(out).filter((f) => f.startsWith(".tideline-export-")),
      [],
      "the downloaded layers are removed",
    );
  });

  it("a range with --from/--to, and clear failures for an unknown timeline or bad usage", async () => {
    const out = join(work, "range");
    const from = segmentStart(end, SEG) - BigInt(2 * SEG);
    const to = from + BigInt(SEG) + 100n;
    const r = await tideline([
      "export",
      "--remote",
      url,
      "--timeline",
      "main",
      "--out",
      out,
      "--from",
      formatLsn(from),
      "--to",
      formatLsn(to),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const whole = assertSegmentsEqualPgWal(out);
    assert.equal(whole.length, 1, `one whole segment: ${readdirSync(out).join(", ")}`);
    assert.equal(readdirSync(out).filter((f) => f.endsWith(".partial")).length, 1);

    const missing = await tideline(["export", "--remote", url, "--timeline", "nope", "--out", out]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no timeline "nope" in s3:\/\//);

    const both = await tideline([
      "export",
      "--remote",
      url,
      "--data-dir",
      work,
      "--timeline",
      "main",
      "--out",
      out,
    ]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /give only one of --data-dir and --remote/);

    for (const [args, pattern] of [
      [["--remote", "ftp://x/y", "--timeline", "main"], /--remote: .*ftp/],
      [["--remote", url, "--timeline", "bad/id"], /Invalid timeline id "bad\/id"/],
    ] as const) {
      const r = await tideline(["export", ...args, "--out", join(work, "usage")]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
    }
  });

  it("SIGTERM mid-export: exit 130 with the downloaded layers removed, and a killed export's scratch removed by the next", async () => {
    const out = join(work, "interrupted");
    // A scratch dir left by an export that was killed (no process has that pid).
    const stale = join(out, ".tideline-export-4194303-AbCdEf");
    mkdirSync(join(stale, "timelines"), { recursive: true });
    const proxy = new FaultProxy(s3.port);
    const port = await proxy.start();
    proxy.faults.push({ kind: "stall" }); // the first request (the index) never answers
    try {
      const child = spawn(
        process.execPath,
        [
          TIDELINE_BIN,
          "export",
          "--remote",
          `s3://${BUCKET}/export?endpoint=http://127.0.0.1:${port}&forcePathStyle=true&region=us-east-1`,
          "--timeline",
          "main",
          "--out",
          out,
        ],
        {
          stdio: ["ignore", "pipe", "pipe"],
          env: {
            ...process.env,
            AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
            AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
          },
        },
      );
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
      const scratchDirs = () =>
        existsSync(out) ? readdirSync(out).filter((f) => f.startsWith(".tideline-export-")) : [];
      // Wait until it is stuck in the download, with its own scratch dir made.
      for (let i = 0; i < 400; i++) {
        const dirs = scratchDirs();
        if (
          proxy.injected.length > 0 &&
          dirs.some((d) => d.startsWith(`.tideline-export-${child.pid}-`))
        )
          break;
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.deepEqual(
        scratchDirs().filter((d) => !d.startsWith(`.tideline-export-${child.pid}-`)),
        [],
        "the killed export's scratch dir was removed",
      );
      child.kill("SIGTERM");
      assert.equal(await exited, 130, stderr);
      assert.match(stderr, /interrupted by SIGTERM/);
      assert.deepEqual(scratchDirs(), [], "no scratch dir left");
    } finally {
      await proxy.close();
    }
  });
});
