/**
 * Fuzzed query parameters, paths and bodies against the HTTP API with a live timeline
 * streaming from PostgreSQL 15: every answer is a 2xx or a clear 4xx (JSON error with a
 * code and a message), never a 500 or a crash, and the server still answers afterwards.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { type Cluster, HAVE_PG15, startCluster } from "../support/postgres.js";
import { type Api, startApi } from "./api_harness.js";

const SKIP = HAVE_PG15 ? false : "PostgreSQL 15 is not installed";

/** Strings a careless or hostile client sends. */
const nasty = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom(
    "",
    "0/0",
    "FFFFFFFF/FFFFFFFF",
    "-1",
    "1e400",
    "NaN",
    "0x10",
    "0/1/2",
    "%00",
    "../../etc/passwd",
    "main",
    "1663/5/16384",
    "4294967296",
    "9".repeat(40),
    "true",
    "[]",
    "{}",
    "null",
    "héllo",
    "\u0000",
  ),
  fc
    .bigInt({ min: 0n, max: (1n << 64n) - 1n })
    .map((n) => `${(n >> 32n).toString(16)}/${(n & 0xffffffffn).toString(16)}`),
  fc.integer().map(String),
);

const endpoints = [
  "/v1/timelines/main/wait_lsn",
  "/v1/timelines/main/wal",
  "/v1/timelines/main/records",
  "/v1/timelines/main/block_history",
  "/v1/timelines/main",
  "/v1/timelines",
  "/v1/tasks",
  "/v1/status",
];
const params = ["lsn", "timeout_ms", "from", "to", "rel", "fork", "blk", "mode", "x"];

async function check(res: Response, what: string): Promise<void> {
  assert.ok(res.status < 500 || res.status === 504, `${what}: ${res.status}`);
  if (res.status >= 400) {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
    assert.equal(typeof body.error?.code, "string", what);
    assert.equal(typeof body.error?.message, "string", what);
  } else {
    await res.arrayBuffer();
  }
}

describe("HTTP API under fuzzed input", { skip: SKIP }, () => {
  let pg: Cluster;
  let dataDir: string;
  let api: Api;

  before(async () => {
    pg = await startCluster({ walSegmentSizeMiB: 1, settings: { wal_keep_size: "128MB" } });
    dataDir = mkdtempSync(join(tmpdir(), "tideline-fuzz-"));
    api = await startApi(dataDir);
    const res = await fetch(`${api.url}/v1/timelines`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: "main",
        sources: [`postgres://postgres@127.0.0.1:${pg.port}/postgres`],
      }),
    });
    assert.equal(res.status, 201);
    await pg.sql("CREATE TABLE f AS SELECT g FROM generate_series(1, 5000) g");
    const lsn = await pg.sql("SELECT pg_current_wal_insert_lsn()");
    assert.equal((await api.fetch(`/v1/timelines/main/wait_lsn?lsn=${lsn}`)).status, 200);
  });

  after(async () => {
    await api?.close("hard");
    await pg?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("query parameters: 2xx or a clear 4xx, never a 500", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...endpoints),
        fc.array(fc.tuple(fc.constantFrom(...params), nasty), { maxLength: 4 }),
        async (path, pairs) => {
          const qs = pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
          const what = `GET ${path}?${qs}`;
          // A valid wait for a far LSN waits: the client gives up, which must be fine too.
          const res = await api
            .fetch(`${path}?${qs}`, { signal: AbortSignal.timeout(1500) })
            .catch((e: unknown) => e);
          if (res instanceof Error) {
            assert.equal(res.name, "TimeoutError", `${what}: ${res.message}`);
            assert.ok(path.endsWith("wait_lsn"), `${what} hung`);
            return;
          }
          await check(res as Response, what);
        },
      ),
      { numRuns: 250 },
    );
  });

  it("paths: unknown, malformed or hostile ids are 4xx", async () => {
    await fc.assert(
      fc.asyncProperty(
        nasty,
        fc.constantFrom("", "/wal", "/records", "/wal_files/x", "/shutdown"),
        async (id, tail) => {
          const path = `/v1/timelines/${encodeURIComponent(id)}${tail}`;
          const method = tail === "/shutdown" ? "POST" : "GET";
          if (id === "main" && tail === "/shutdown") return; // stopping it is a valid request
          const res = await api.fetch(path, { method, signal: AbortSignal.timeout(5000) });
          await check(res, `${method} ${path}`);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("bodies of POST /v1/timelines: 400 (or 409/502), never a 500, nothing half-created", async () => {
    const before = api.service.list().map((t) => t.definition.id);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.string({ maxLength: 50 }),
          fc
            .record(
              {
                id: nasty,
                sources: fc.oneof(fc.array(nasty, { maxLength: 3 }), nasty),
                slot: nasty,
                startLsn: nasty,
                other: nasty,
              },
              { requiredKeys: [] },
            )
            .map((o) => JSON.stringify(o)),
        ),
        async (body) => {
          const res = await api.fetch("/v1/timelines", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
            signal: AbortSignal.timeout(20_000),
          });
          assert.notEqual(res.status, 201, `created from ${body}`);
          await check(res, `POST ${body}`);
        },
      ),
      { numRuns: 200 },
    );
    assert.deepEqual(
      api.service.list().map((t) => t.definition.id),
      before,
    );
    const status = await api.fetch("/v1/timelines/main");
    assert.equal(status.status, 200);
    assert.equal(((await status.json()) as { state: string }).state, "active");
  });
});
