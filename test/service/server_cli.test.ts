/**
 * `tideline server` as an operator runs it: a process of its own, SIGTERM flushes every
 * timeline and exits 0, a restart reattaches them from the data directory and streams on
 * with no gap (the export equals the source's pg_wal), a second signal stops at once, and
 * two servers cannot share a data directory.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseLsn } from "../../src/wal/index.js";
import { assertExportEqualsPgWal } from "../support/export_check.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";

const BIN = resolve("dist/cli/main.js");
const SKIP = HAVE_PG15 ? false : "PostgreSQL 15 is not installed";

interface ServerProcess {
  url: string;
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

async function startServer(dataDir: string, extra: string[] = []): Promise<ServerProcess> {
  const proc = spawn(
    process.execPath,
    [BIN, "server", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--no-sync", ...extra],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`server exited ${code} before listening: ${err}`)));
  });
  return { url, proc, stderr: () => err, exited };
}

async function get(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

describe("tideline server (the process)", { skip: SKIP }, () => {
  let pg: Cluster;
  let dir: string;
  const running: ServerProcess[] = [];

  before(async () => {
    pg = await startCluster({
      walSegmentSizeMiB: 1,
      settings: { wal_level: "replica", wal_keep_size: "256MB" },
    });
    dir = mkdtempSync(join(tmpdir(), "tideline-server-"));
    await pg.sql("CREATE TABLE t (id int, v text)");
  });

  after(async () => {
    for (const s of running) s.proc.kill("SIGKILL");
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("SIGTERM flushes and exits 0; a restart reattaches and streams on with no gap", async () => {
    const dataDir = join(dir, "data");
    const first = await startServer(dataDir);
    running.push(first);
    const created = await fetch(`${first.url}/v1/timelines`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: "main",
        sources: [`postgres://postgres@127.0.0.1:${pg.port}/postgres`],
        slot: "tideline_main",
      }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    await pg.sql("INSERT INTO t SELECT g, repeat('a', 100) FROM generate_series(1, 20000) g");
    const mid = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    await get(`${first.url}/v1/timelines/main/wait_lsn?lsn=${mid}`);
    // The slot exists and never claims more than what is durable.
    const slotFlush = await pg.sql(
      "SELECT coalesce(restart_lsn::text, '') FROM pg_replication_slots WHERE slot_name = 'tideline_main'",
    );
    assert.notEqual(slotFlush, "", "the slot was created");

    first.proc.kill("SIGTERM");
    assert.equal(await first.exited, 0, first.stderr());
    assert.match(first.stderr(), /timeline stopped/);
    const index = JSON.parse(
      readFileSync(join(dataDir, "timelines", "main", "index.json"), "utf8"),
    );
    assert.ok(
      parseLsn(index.diskConsistentLsn) >= parseLsn(mid),
      "everything received was flushed",
    );

    // WAL written while no server runs is streamed after the restart (the slot kept it).
    await pg.sql("INSERT INTO t SELECT g, repeat('b', 100) FROM generate_series(1, 20000) g");
    const second = await startServer(dataDir);
    running.push(second);
    const tl = await get(`${second.url}/v1/timelines/main`);
    assert.equal(tl.state, "active");
    assert.match(second.stderr(), /timeline reattached/);
    const end = await pg.switchWal();
    await get(`${second.url}/v1/timelines/main/wait_lsn?lsn=${end}&timeout_ms=60000`);
    second.proc.kill("SIGTERM");
    assert.equal(await second.exited, 0, second.stderr());

    await assertExportEqualsPgWal({
      dataDir,
      out: join(dir, "export"),
      walDir: pg.walDir,
      minSegments: 3,
    });
  });

  it("a second server on the same data directory is refused; a second signal is heeded and it still exits 0", async () => {
    const dataDir = join(dir, "data");
    const server = await startServer(dataDir);
    running.push(server);
    const other = spawnSync(
      process.execPath,
      [BIN, "server", "--data-dir", dataDir, "--listen", "127.0.0.1:0"],
      { encoding: "utf8", timeout: 30_000 },
    );
    assert.equal(other.status, 1);
    assert.match(
      other.stderr,
      new RegExp(`in use by another tideline server \\(process ${server.proc.pid}\\)`),
    );
    await get(`${server.url}/v1/timelines/main`);
    server.proc.kill("SIGTERM");
    server.proc.kill("SIGINT");
    assert.equal(await server.exited, 0, server.stderr());
    assert.match(server.stderr(), /stopping at once/);
  });

  it("refuses bad options with a one-line error", () => {
    for (const [args, pattern] of [
      [["--listen", "nowhere"], /nowhere/],
      [["--listen", "127.0.0.1:99999"], /99999/],
      [["--remote", "ftp://x"], /ftp/],
      [["--local-layer-limit", "1GiB"], /--remote/],
      [["--layer-size", "big"], /big/],
    ] as const) {
      const r = spawnSync(
        process.execPath,
        [BIN, "server", "--data-dir", join(dir, "x"), ...args],
        {
          encoding: "utf8",
          timeout: 30_000,
        },
      );
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, pattern);
    }
  });
});
