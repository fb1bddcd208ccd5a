/**
 * `tideline server` with remote storage: layers are uploaded and `remoteConsistentLsn`
 * shown; old layers are evicted under a local limit and read back from remote storage;
 * `restore-wal --server` fetches WAL files from the running server; a timeline whose local
 * data is gone is attached from remote storage at start (or at POST) and streams on with
 * no gap.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { openRemoteStorage, type RemoteStorage } from "../../src/remote/index.js";
import { formatLsn, parseLsn, segmentFileName, segmentNumber } from "../../src/wal/index.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";
import { type Api, postJson, startApi } from "./api_harness.js";

const BIN = resolve("dist/cli/main.js");
const SKIP = HAVE_PG15 ? false : "PostgreSQL 15 is not installed";
const SEG = 1 << 20;
const LAYER = 256 * 1024;

async function restoreWal(args: string[], env: Record<string, string> = {}) {
  try {
    const r = await promisify(execFile)(process.execPath, [BIN, "restore-wal", ...args], {
      encoding: "utf8",
      env: { ...process.env, ...env },
    });
    return { status: 0, stderr: r.stderr };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { status: e.code, stderr: e.stderr };
  }
}

async function timelineJson(api: Api, id = "main"): Promise<Record<string, string | number>> {
  const res = await api.fetch(`/v1/timelines/${id}`);
  const body = (await res.json()) as Record<string, string | number>;
  assert.equal(res.status, 200, JSON.stringify(body));
  return body;
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting until ${what}`);
}

describe("tideline server with remote storage", { skip: SKIP }, () => {
  let pg: Cluster;
  let dir: string;
  let remote: RemoteStorage;
  let api: Api;
  let source: string;
  let startLsn: bigint;

  before(async () => {
    pg = await startCluster({
      walSegmentSizeMiB: 1,
      settings: { wal_level: "replica", wal_keep_size: "512MB" },
    });
    dir = mkdtempSync(join(tmpdir(), "tideline-server-remote-"));
    remote = await openRemoteStorage(`file://${join(dir, "remote")}`);
    source = `postgres://postgres@127.0.0.1:${pg.port}/postgres`;
    await pg.sql("CREATE TABLE t (id int, v text)");
  });

  after(async () => {
    await api?.close("hard");
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("uploads layers; evicted layers are read back from remote storage byte-exact", async () => {
    api = await startApi(join(dir, "data"), { remote, layerSize: LAYER });
    const res = await postJson(api, "/v1/timelines", { id: "main", sources: [source] });
    assert.equal(res.status, 201, await res.clone().text());
    startLsn = parseLsn(String((await timelineJson(api)).startLsn));
    await pg.sql("INSERT INTO t SELECT g, repeat('r', 200) FROM generate_series(1, 20000) g");
    const end = parseLsn(await pg.switchWal());
    assert.equal(
      (await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${formatLsn(end)}`)).status,
      200,
    );
    // Layers fill at 256 KiB, so most of the WAL becomes durable and then remote by itself.
    const target = end - BigInt(LAYER);
    await until("most WAL is in remote storage", async () => {
      const tl = await timelineJson(api);
      return parseLsn(String(tl.remoteConsistentLsn)) >= target;
    });
    const metrics = await (await api.fetch("/metrics")).text();
    assert.match(metrics, /^tideline_timeline_layers_uploaded_total\{timeline="main"\} [1-9]/m);
    assert.match(metrics, /^tideline_timeline_remote_consistent_lsn\{timeline="main"\} [1-9]/m);

    const tl = api.service.get("main").timeline!;
    const evicted = api.service.evictLayers(0);
    assert.ok(evicted >= 3, `evicted ${evicted} layers`);
    assert.ok(tl.layerFiles.some((l) => !l.resident));
    for (const l of tl.layerFiles.filter((f) => !f.resident))
      assert.equal(existsSync(l.path), false);
    // Two whole segments, read through the API, come back from remote storage.
    for (let seg = segmentNumber(startLsn, SEG); seg < segmentNumber(startLsn, SEG) + 2n; seg++) {
      const name = segmentFileName(1, seg, SEG);
      const from = seg * BigInt(SEG);
      const wal = await api.fetch(
        `/v1/timelines/main/wal?from=${formatLsn(from)}&to=${formatLsn(from + BigInt(SEG))}`,
      );
      assert.equal(wal.status, 200);
      assert.ok(
        Buffer.from(await wal.arrayBuffer()).equals(readFileSync(join(pg.walDir, name))),
        name,
      );
    }
    assert.match(
      await (await api.fetch("/v1/tasks")).text(),
      /remote upload main/,
      "the upload task is in the tree",
    );
  });

  it("restore-wal --server fetches WAL files from the running server", async () => {
    const name = segmentFileName(1, segmentNumber(startLsn, SEG) + 1n, SEG);
    const dest = join(dir, "RECOVERYXLOG");
    const ok = await restoreWal(["--server", api.url, "--timeline", "main", name, dest]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(readFileSync(dest).equals(readFileSync(join(pg.walDir, name))));
    const missing = join(dir, "missing");
    const no = await restoreWal([
      "--server",
      api.url,
      "--timeline",
      "main",
      "000000010000000F000000FF",
      missing,
    ]);
    assert.equal(no.status, 1, no.stderr);
    assert.equal(existsSync(missing), false);
    // A timeline the server does not have is a failure (a wrong --timeline), not "not held":
    // the server's 404 says what is missing.
    const unknown = await restoreWal(["--server", api.url, "--timeline", "other", name, missing]);
    assert.equal(unknown.status, 2, unknown.stderr);
    assert.match(unknown.stderr, /no timeline "other"/);
    assert.equal(existsSync(missing), false);
    const aborted = await restoreWal([
      "--on-error",
      "abort",
      "--server",
      api.url,
      "--timeline",
      "other",
      name,
      missing,
    ]);
    assert.equal(aborted.status, 255, aborted.stderr);
    // A wrong server URL (no such route there) is a failure too, never "not held".
    const wrongUrl = await restoreWal([
      "--on-error",
      "abort",
      "--server",
      `${api.url}/tideline`,
      "--timeline",
      "main",
      name,
      missing,
    ]);
    assert.equal(wrongUrl.status, 255, wrongUrl.stderr);
    assert.match(wrongUrl.stderr, /No route/);
  });

  it("a restart with the local data gone attaches from remote storage and streams on", async () => {
    const before = await timelineJson(api);
    await api.close("freeze-and-flush");
    const remoteEnd = parseLsn(String(before.lastRecordLsn));
    rmSync(join(dir, "data", "timelines"), { recursive: true, force: true });
    await pg.sql("INSERT INTO t SELECT g, repeat('s', 200) FROM generate_series(1, 5000) g");

    api = await startApi(join(dir, "data"), { remote, layerSize: LAYER });
    const tl = await timelineJson(api);
    assert.equal(tl.state, "active");
    assert.equal(tl.startLsn, formatLsn(startLsn));
    assert.ok(parseLsn(String(tl.lastRecordLsn)) <= remoteEnd + BigInt(SEG));
    assert.ok(api.logs.some((l) => l.includes("timeline attached from remote storage")));
    const end = parseLsn(await pg.switchWal());
    assert.equal(
      (await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${formatLsn(end)}&timeout_ms=60000`))
        .status,
      200,
    );
    // Every whole segment from the start to now, across the attach, equals pg_wal.
    for (let seg = segmentNumber(startLsn, SEG); seg < segmentNumber(end, SEG); seg++) {
      const name = segmentFileName(1, seg, SEG);
      const res = await api.fetch(`/v1/timelines/main/wal_files/${name}`);
      assert.equal(res.status, 200, name);
      assert.ok(
        Buffer.from(await res.arrayBuffer()).equals(readFileSync(join(pg.walDir, name))),
        name,
      );
    }
  });

  it("POST on a new data dir for an archived id attaches instead of starting over", async () => {
    await api.close("freeze-and-flush");
    api = await startApi(join(dir, "data2"), { remote, layerSize: LAYER });
    const res = await postJson(api, "/v1/timelines", { id: "main", sources: [source] });
    const body = (await res.json()) as Record<string, string>;
    assert.equal(res.status, 201, JSON.stringify(body));
    assert.equal(body.startLsn, formatLsn(startLsn), "it goes on from the archive's start");
    await pg.sql("INSERT INTO t VALUES (0, 'after')");
    const lsn = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    assert.equal(
      (await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${lsn}&timeout_ms=60000`)).status,
      200,
    );
  });
});
