/**
 * The HTTP API end to end against a real PostgreSQL 15: every endpoint, every status
 * code the API promises, what it returns compared with the server's own files, and
 * that requests are tasks that shutdown cancels and client disconnects end.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpGet, type IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { TaskTreeNode } from "../../src/lifecycle/index.js";
import { freePort } from "../../src/service/local_postgres.js";
import { formatLsn, parseLsn, segmentFileName, segmentNumber } from "../../src/wal/index.js";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";
import { type Api, postJson, startApi } from "./api_harness.js";

const SKIP = HAVE_PG15 ? false : "PostgreSQL 15 is not installed";
const SEG = 1 << 20;

function flatten(nodes: readonly TaskTreeNode[]): TaskTreeNode[] {
  return nodes.flatMap((n) => [n, ...flatten(n.children)]);
}

async function json(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`not JSON (status ${res.status}): ${text.slice(0, 200)}`);
  }
}

async function expectError(
  res: Response,
  status: number,
  code?: string,
  what?: string,
): Promise<string> {
  const body = await json(res);
  assert.equal(
    res.status,
    status,
    `expected ${status}, got ${res.status}: ${JSON.stringify(body)}`,
  );
  const error = body.error as { code: string; message: string; what?: string };
  assert.equal(typeof error.message, "string");
  assert.ok(error.message.length > 0);
  if (code !== undefined) assert.equal(error.code, code);
  if (what !== undefined) assert.equal(error.what, what);
  return error.message;
}

describe("tideline server HTTP API", { skip: SKIP }, () => {
  let pg: Cluster;
  let dataDir: string;
  let api: Api;
  let source: string;

  before(async () => {
    pg = await startCluster({
      walSegmentSizeMiB: 1,
      settings: { wal_level: "replica", wal_keep_size: "256MB" },
    });
    dataDir = mkdtempSync(join(tmpdir(), "tideline-api-"));
    api = await startApi(dataDir);
    // trust auth ignores the password: it is here to prove it never comes back out.
    source = `postgres://postgres:s3cret-pw@127.0.0.1:${pg.port}/postgres`;
    await pg.sql("CREATE TABLE t (id int primary key, v text)");
  });

  after(async () => {
    await api?.close("hard");
    await pg?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("GET /v1/status answers with version, uptime and the timeline count", async () => {
    const res = await api.fetch("/v1/status");
    assert.equal(res.status, 200);
    const body = await json(res);
    assert.match(String(body.version), /^\d+\.\d+\.\d+/);
    assert.equal(body.timelines, 0);
    assert.equal(typeof body.uptimeSeconds, "number");
  });

  it("POST /v1/timelines refuses bad bodies with 400 naming what is wrong", async () => {
    const cases: [unknown, RegExp][] = [
      [{ id: "bad id!", sources: [source] }, /id/],
      [{ id: "x".repeat(65), sources: [source] }, /id/],
      [{ id: "ok" }, /sources/],
      [{ id: "ok", sources: [] }, /sources/],
      [{ id: "ok", sources: [source], extra: 1 }, /extra/],
      [{ id: "ok", sources: ["mysql://nope"] }, /sources\[0\]|connection/i],
      [{ id: "ok", sources: [source], startLsn: "zz" }, /zz/],
      [{ id: "ok", sources: [source], slot: "Bad-Slot" }, /Bad-Slot/],
      [[1, 2], /body/],
      ["just a string", /body/],
    ];
    for (const [body, pattern] of cases) {
      const message = await expectError(
        await postJson(api, "/v1/timelines", body),
        400,
        "bad_request",
      );
      assert.match(message, pattern, `for ${JSON.stringify(body)}`);
    }
    const notJson = await api.fetch("/v1/timelines", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    await expectError(notJson, 400, "bad_request");
    const wrongType = await api.fetch("/v1/timelines", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "id=main",
    });
    await expectError(wrongType, 415);
    // Nothing was created by any of them.
    assert.equal(api.service.list().length, 0);
  });

  it("POST /v1/timelines with an unreachable source is 502 and leaves nothing behind", async () => {
    const port = await freePort();
    const res = await postJson(api, "/v1/timelines", {
      id: "nowhere",
      sources: [`postgres://postgres@127.0.0.1:${port}/postgres`],
    });
    await expectError(res, 502, "source_unreachable");
    assert.equal(api.service.list().length, 0);
    assert.equal(existsSync(join(dataDir, "timelines", "nowhere")), false);
  });

  it("creates a timeline (201), refuses the same id (409) and never shows the password", async () => {
    const res = await postJson(api, "/v1/timelines", { id: "main", sources: [source] });
    const body = await json(res);
    assert.equal(res.status, 201, JSON.stringify(body));
    assert.equal(body.id, "main");
    assert.equal(body.state, "active");
    assert.equal(body.segmentSize, SEG);
    assert.match(String(body.systemId), /^\d+$/);
    assert.equal(body.pgTimeline, 1);
    const again = await postJson(api, "/v1/timelines", { id: "main", sources: [source] });
    await expectError(again, 409, "conflict");
    const list = await json(await api.fetch("/v1/timelines"));
    assert.deepEqual(
      (list.timelines as { id: string }[]).map((t) => t.id),
      ["main"],
    );
    const text = JSON.stringify(list) + JSON.stringify(body) + api.logs.join("\n");
    assert.ok(!text.includes("s3cret-pw"), "the password leaked into a response or a log");
    // The definition on disk keeps it (to reconnect), readable by the owner only.
    const defPath = join(dataDir, "server", "timelines", "main.json");
    assert.ok(readFileSync(defPath, "utf8").includes("s3cret-pw"));
    const { statSync } = await import("node:fs");
    assert.equal(statSync(defPath).mode & 0o777, 0o600);
  });

  it("GET /v1/timelines/:id shows LSNs and the WAL receiver; 404 unknown, 400 invalid", async () => {
    await pg.sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g");
    const target = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    const waited = await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${target}&timeout_ms=30000`);
    assert.equal(waited.status, 200, await waited.clone().text());
    const body = await json(await api.fetch("/v1/timelines/main"));
    assert.ok(parseLsn(String(body.lastRecordLsn)) >= parseLsn(target));
    const wr = body.walreceiver as Record<string, unknown>;
    assert.equal(wr.connected, true);
    assert.match(String(wr.source), new RegExp(`127\\.0\\.0\\.1:${pg.port}`));
    assert.ok(!String(wr.source).includes("s3cret"));
    assert.equal(typeof wr.lastMessageAt, "string");
    assert.deepEqual(wr.switches, { NoExistingConnection: 1 });
    await expectError(await api.fetch("/v1/timelines/nope"), 404, "not_found", "timeline");
    await expectError(
      await api.fetch("/v1/timelines/nope/wal_files/000000010000000000000001"),
      404,
      "not_found",
      "timeline",
    );
    await expectError(await api.fetch("/v1/timelines/bad%20id"), 400, "bad_request");
    await expectError(await api.fetch("/v1/nothing/here"), 404, "not_found", "route");
  });

  it("wait_lsn: 200 when reached, 504 on timeout, 400 for a malformed LSN or timeout", async () => {
    const now = await json(await api.fetch("/v1/timelines/main"));
    const reached = await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${now.lastRecordLsn}`);
    assert.equal(reached.status, 200);
    const far = formatLsn(parseLsn(String(now.lastRecordLsn)) + (1n << 40n));
    const timedOut = await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${far}&timeout_ms=200`);
    const message = await expectError(timedOut, 504, "timeout");
    assert.match(message, new RegExp(far.replace("/", "\\/")));
    for (const q of [
      "lsn=zz",
      "lsn=1/2/3",
      "lsn=123456789/0",
      "",
      `lsn=${far}&timeout_ms=-1`,
      `lsn=${far}&timeout_ms=abc`,
      `lsn=${far}&timeout_ms=99999999999`,
      `lsn=${far}&bogus=1`,
    ]) {
      await expectError(await api.fetch(`/v1/timelines/main/wait_lsn?${q}`), 400, "bad_request");
    }
    await expectError(await api.fetch(`/v1/timelines/nope/wait_lsn?lsn=0/0`), 404);
  });

  it("a client that goes away ends its wait_lsn task", async () => {
    const far = formatLsn(
      parseLsn(String((await json(await api.fetch("/v1/timelines/main"))).lastRecordLsn)) +
        (1n << 40n),
    );
    const abort = new AbortController();
    const pending = api
      .fetch(`/v1/timelines/main/wait_lsn?lsn=${far}&timeout_ms=600000`, { signal: abort.signal })
      .catch((e: unknown) => e);
    const waiting = () =>
      flatten(api.tasks.tree()).filter(
        (t) => t.kind === "HttpRequest" && t.name.includes("wait_lsn"),
      );
    for (let i = 0; i < 200 && waiting().length === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(waiting().length, 1, "the wait runs as an HttpRequest task");
    assert.equal(api.service.get("main").timeline!.waitLsnWaiters, 1);
    abort.abort();
    await pending;
    for (let i = 0; i < 200 && waiting().length > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(waiting().length, 0, "the task ended when the client went away");
    assert.equal(api.service.get("main").timeline!.waitLsnWaiters, 0);
  });

  it("GET wal returns the bytes of the source's pg_wal; out-of-range is 400", async () => {
    await pg.sql("INSERT INTO t SELECT g, 'y' FROM generate_series(1001, 3000) g");
    const seg = await pg.switchWal();
    const segEnd = parseLsn(seg);
    const waited = await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${seg}`);
    assert.equal(waited.status, 200);
    const tl = await json(await api.fetch("/v1/timelines/main"));
    const start = parseLsn(String(tl.startLsn));
    // The whole first segment, compared with the server's file.
    const res = await api.fetch(
      `/v1/timelines/main/wal?from=${formatLsn(start)}&to=${formatLsn(start + BigInt(SEG))}`,
    );
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    const bytes = Buffer.from(await res.arrayBuffer());
    const name = segmentFileName(1, segmentNumber(start, SEG), SEG);
    assert.ok(bytes.equals(readFileSync(join(pg.walDir, name))), `WAL of ${name} differs`);
    assert.ok(segEnd > start);
    await expectError(await api.fetch(`/v1/timelines/main/wal?from=0/10&to=0/20`), 400);
    await expectError(await api.fetch(`/v1/timelines/main/wal?from=FFFFFFFF/0`), 400);
    await expectError(
      await api.fetch(
        `/v1/timelines/main/wal?from=${formatLsn(start + 100n)}&to=${formatLsn(start)}`,
      ),
      400,
    );
  });

  it("GET wal_files serves a whole segment byte-exact, and 404 for one it does not hold", async () => {
    const tl = await json(await api.fetch("/v1/timelines/main"));
    const start = parseLsn(String(tl.startLsn));
    const name = segmentFileName(1, segmentNumber(start, SEG), SEG);
    const res = await api.fetch(`/v1/timelines/main/wal_files/${name}`);
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(readFileSync(join(pg.walDir, name))));
    await expectError(
      await api.fetch(`/v1/timelines/main/wal_files/000000010000000F000000FF`),
      404,
      "not_found",
      "wal_file",
    );
    await expectError(await api.fetch(`/v1/timelines/main/wal_files/00000005.history`), 404);
    await expectError(await api.fetch(`/v1/timelines/main/wal_files/not-a-wal-file`), 400);
  });

  it("GET records streams NDJSON in waldump --json's shape, filtered by relation and block", async () => {
    const tl = await json(await api.fetch("/v1/timelines/main"));
    const res = await api.fetch(
      `/v1/timelines/main/records?from=${tl.startLsn}&to=${tl.lastRecordLsn}`,
    );
    assert.equal(res.status, 200);
    assert.match(String(res.headers.get("content-type")), /ndjson/);
    const lines = (await res.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.length > 100, `only ${lines.length} records`);
    for (const key of [
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
    ])
      assert.ok(key in lines[0]!, `records lack "${key}"`);
    for (let i = 1; i < lines.length; i++)
      assert.ok(parseLsn(String(lines[i]!.lsn)) > parseLsn(String(lines[i - 1]!.lsn)));

    const [spc, db, rel] = (
      await pg.sql(
        "SELECT (CASE WHEN reltablespace = 0 THEN 1663 ELSE reltablespace END) || ' ' || (SELECT oid FROM pg_database WHERE datname = current_database()) || ' ' || pg_relation_filenode('t') FROM pg_class WHERE relname = 't'",
      )
    ).split(" ");
    const relText = `${spc}/${db}/${rel}`;
    const byRel = (await (await api.fetch(`/v1/timelines/main/records?rel=${relText}`)).text())
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as { type: string; blocks: { rel: string; blk: number; fork: string }[] },
      );
    assert.ok(byRel.length >= 10);
    for (const r of byRel) assert.ok(r.blocks.some((b) => b.rel === relText));
    assert.ok(byRel.some((r) => r.type.startsWith("INSERT")));
    const byBlock = (
      await (await api.fetch(`/v1/timelines/main/records?rel=${relText}&fork=main&blk=0`)).text()
    )
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { blocks: { rel: string; blk: number; fork: string }[] });
    assert.ok(byBlock.length > 0 && byBlock.length < byRel.length);
    for (const r of byBlock)
      assert.ok(r.blocks.some((b) => b.rel === relText && b.blk === 0 && b.fork === "main"));
    const hist = await json(
      await api.fetch(`/v1/timelines/main/block_history?rel=${relText}&blk=0`),
    );
    assert.equal(typeof hist.hasBaseImage, "boolean");
    assert.ok((hist.records as unknown[]).length > 0);

    for (const q of [
      "rel=1/2",
      "rel=a/b/c",
      "blk=1",
      "rel=1/2/3&fork=nope",
      "rel=1/2/3&blk=-1",
      "from=zz",
      "limit=3",
    ]) {
      await expectError(await api.fetch(`/v1/timelines/main/records?${q}`), 400, "bad_request");
    }
  });

  it("GET /v1/tasks shows the WAL receiver's three tasks; /metrics and /openapi.json answer", async () => {
    const tree = (await json(await api.fetch("/v1/tasks"))).tasks as TaskTreeNode[];
    const all = flatten(tree);
    const kinds = new Set(all.map((t) => t.kind));
    for (const k of [
      "WalReceiverManager",
      "WalReceiverConnectionHandler",
      "WalReceiverConnectionPoller",
    ])
      assert.ok(kinds.has(k), `no ${k} task in ${JSON.stringify([...kinds])}`);
    const manager = all.find((t) => t.kind === "WalReceiverManager")!;
    const handler = manager.children.find((t) => t.kind === "WalReceiverConnectionHandler");
    assert.ok(handler !== undefined, "the connection handler is the manager's child");
    assert.ok(handler.children.some((t) => t.kind === "WalReceiverConnectionPoller"));
    for (const t of all) {
      assert.equal(typeof t.id, "number");
      assert.equal(typeof t.name, "string");
      assert.equal(typeof t.state, "string");
      assert.match(String(t.startedAt), /^\d{4}-\d\d-\d\dT/);
    }

    const metrics = await (await api.fetch("/metrics")).text();
    for (const line of [
      /^tideline_timeline_last_record_lsn\{timeline="main"\} \d+/m,
      /^tideline_timeline_disk_consistent_lsn\{timeline="main"\} \d+/m,
      /^tideline_timeline_lag_bytes\{timeline="main",lag="disk"\} \d+/m,
      /^tideline_timeline_ingested_records_total\{timeline="main"\} [1-9]\d*/m,
      /^tideline_timeline_ingested_bytes_total\{timeline="main"\} [1-9]\d*/m,
      /^tideline_walreceiver_switches_total\{timeline="main",reason="NoExistingConnection"\} 1/m,
      /^tideline_walreceiver_connection_attempts_total\{timeline="main"\} 1/m,
      /^tideline_tasks\{kind="WalReceiverConnectionPoller"\} 1/m,
      /^tideline_wait_lsn_duration_seconds_count\{timeline="main",outcome="reached"\} [1-9]/m,
      /^tideline_wait_lsn_duration_seconds_count\{timeline="main",outcome="timeout"\} [1-9]/m,
      /^tideline_wait_lsn_waiters\{timeline="main"\} 0/m,
      /^tideline_timelines\{state="active"\} 1/m,
      /^tideline_process_cpu_seconds_total /m,
    ]) {
      assert.match(metrics, line);
    }

    const doc = await json(await api.fetch("/openapi.json"));
    assert.equal(doc.openapi, "3.0.3");
    const paths = doc.paths as Record<string, unknown>;
    for (const p of [
      "/v1/status",
      "/v1/timelines",
      "/v1/timelines/{id}",
      "/v1/timelines/{id}/wait_lsn",
      "/v1/timelines/{id}/wal",
      "/v1/timelines/{id}/records",
      "/v1/timelines/{id}/shutdown",
      "/v1/tasks",
    ])
      assert.ok(p in paths, `OpenAPI lacks ${p}`);
  });

  it("a stream whose client stops reading or goes away lets go of the timeline", async () => {
    // Enough WAL that a response cannot sit whole in the socket buffers.
    await pg.sql("INSERT INTO t SELECT g, repeat('w', 300) FROM generate_series(10001, 60000) g");
    const target = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    assert.equal((await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${target}`)).status, 200);
    const tl = api.service.get("main").timeline!;
    const readers = () => tl.gate.holders().filter((h) => h.holder.startsWith("read"));
    for (const path of ["wal", "records"]) {
      // Read the first piece, then stop reading: the task waits on back-pressure.
      const req = httpGet(`${api.url}/v1/timelines/main/${path}`);
      const res = await new Promise<IncomingMessage>((r) => req.on("response", r));
      assert.equal(res.statusCode, 200);
      await new Promise((r) => res.once("data", r));
      res.pause();
      for (let i = 0; i < 100 && readers().length === 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(readers().length, 1, `${path}: the stalled stream holds the timeline's gate`);
      req.destroy();
      for (let i = 0; i < 300 && readers().length > 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(readers(), [], `${path}: the stream let go once its client went away`);
      assert.equal(
        flatten(api.tasks.tree()).filter((t) => t.kind === "HttpRequest").length,
        0,
        `${path}: no request task is left`,
      );
    }
    const head = await api.fetch("/v1/timelines/main/wal", { method: "HEAD" });
    assert.equal(head.status, 404, "no HEAD route that would read everything for nothing");
  });

  it("runs a second timeline beside the first; each has its own WAL receiver", async () => {
    // A password may come as a URL parameter too: never shown either.
    const res = await postJson(api, "/v1/timelines", {
      id: "second",
      sources: [`${source}?password=qs-s3cret`],
    });
    assert.equal(res.status, 201, await res.clone().text());
    await pg.sql("INSERT INTO t SELECT g, 'z' FROM generate_series(3001, 4000) g");
    const target = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    for (const id of ["main", "second"]) {
      const w = await api.fetch(`/v1/timelines/${id}/wait_lsn?lsn=${target}&timeout_ms=30000`);
      assert.equal(w.status, 200, `${id}: ${await w.clone().text()}`);
    }
    const managers = flatten(api.tasks.tree()).filter((t) => t.kind === "WalReceiverManager");
    assert.deepEqual(managers.map((t) => t.name).sort(), [
      "walreceiver manager main",
      "walreceiver manager second",
    ]);
    const list = (await json(await api.fetch("/v1/timelines"))).timelines as { id: string }[];
    assert.deepEqual(
      list.map((t) => t.id),
      ["main", "second"],
    );
    const shown =
      JSON.stringify(list) + JSON.stringify(await json(await api.fetch("/v1/timelines/second")));
    assert.ok(shown.includes("password=***"), shown);
    assert.ok(
      !(shown + api.logs.join("\n")).includes("qs-s3cret"),
      "a URL parameter password leaked",
    );
    const del = await api.fetch("/v1/timelines/second", { method: "DELETE" });
    assert.equal(del.status, 200);
    assert.deepEqual(
      flatten(api.tasks.tree())
        .filter((t) => t.kind === "WalReceiverManager")
        .map((t) => t.name),
      ["walreceiver manager main"],
    );
    assert.equal((await api.fetch("/v1/timelines/main")).status, 200);
  });

  it("shutdown: a pending wait_lsn gets 503, the LSNs come back, later waits get 503", async () => {
    const now = await json(await api.fetch("/v1/timelines/main"));
    const far = formatLsn(parseLsn(String(now.lastRecordLsn)) + (1n << 40n));
    const pending = api.fetch(`/v1/timelines/main/wait_lsn?lsn=${far}&timeout_ms=600000`);
    for (let i = 0; i < 200 && api.service.get("main").timeline!.waitLsnWaiters === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    // A reader that stalls mid-stream must not keep the shutdown waiting.
    const stalled = httpGet(`${api.url}/v1/timelines/main/wal`);
    const stalledRes = await new Promise<IncomingMessage>((r) => stalled.on("response", r));
    await new Promise((r) => stalledRes.once("data", r));
    stalledRes.pause();
    stalled.on("error", () => {});
    const res = await api.fetch("/v1/timelines/main/shutdown?mode=freeze-and-flush", {
      method: "POST",
    });
    const body = await json(res);
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.mode, "freeze-and-flush");
    assert.equal(body.diskConsistentLsn, body.lastRecordLsn);
    await expectError(await pending, 503, "shutting_down");
    stalled.destroy();
    await expectError(await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${far}`), 503);
    const after = await json(await api.fetch("/v1/timelines/main"));
    assert.equal(after.state, "stopped");
    assert.equal(after.walreceiver, null);
    await expectError(
      await api.fetch("/v1/timelines/main/shutdown?mode=sideways", { method: "POST" }),
      400,
    );
    assert.equal(
      flatten(api.tasks.tree()).filter((t) => t.kind.startsWith("WalReceiver")).length,
      0,
      "the WAL receiver's tasks are gone",
    );
  });

  it("POST start brings a stopped timeline back; it streams on; starting it twice is 409", async () => {
    const stopped = await json(await api.fetch("/v1/timelines/main"));
    assert.equal(stopped.state, "stopped");
    const res = await api.fetch("/v1/timelines/main/start", { method: "POST" });
    const body = await json(res);
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.state, "active");
    assert.equal(body.lastRecordLsn, stopped.lastRecordLsn, "it resumes where it stopped");
    await expectError(
      await api.fetch("/v1/timelines/main/start", { method: "POST" }),
      409,
      "conflict",
    );
    await expectError(await api.fetch("/v1/timelines/nope/start", { method: "POST" }), 404);
    await pg.sql("INSERT INTO t SELECT g, 'again' FROM generate_series(70001, 71000) g");
    const lsn = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    const w = await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${lsn}&timeout_ms=30000`);
    assert.equal(w.status, 200, await w.clone().text());
    const managers = flatten(api.tasks.tree()).filter((t) => t.kind === "WalReceiverManager");
    assert.deepEqual(
      managers.map((t) => t.name),
      ["walreceiver manager main"],
    );
  });

  it("DELETE removes the timeline and its local data; then it is 404", async () => {
    const dir = join(dataDir, "timelines", "main");
    assert.ok(existsSync(dir));
    const res = await api.fetch("/v1/timelines/main", { method: "DELETE" });
    assert.equal(res.status, 200);
    assert.deepEqual(await json(res), { id: "main", deleted: true });
    assert.equal(existsSync(dir), false);
    assert.equal(existsSync(join(dataDir, "server", "timelines", "main.json")), false);
    await expectError(await api.fetch("/v1/timelines/main"), 404);
    await expectError(await api.fetch("/v1/timelines/main", { method: "DELETE" }), 404);
  });
});
