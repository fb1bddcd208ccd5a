/**
 * The server's own lifecycle, with timelines whose source is unreachable (no PostgreSQL
 * needed): a timeline that cannot be opened is shown and can be deleted; two deletes at
 * once; and every kind of request while the server shuts down.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Api, fabricateTimeline, postJson, startApi } from "./api_harness.js";

describe("tideline server lifecycle", () => {
  let dir: string;
  let api: Api;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "tideline-server-life-"));
    for (const id of ["a", "b", "broken"]) await fabricateTimeline(dir, id);
    writeFileSync(join(dir, "timelines", "broken", "index.json"), "{ not json");
    api = await startApi(dir, { maxWaitersPerTimeline: 2 });
  });

  after(async () => {
    await api?.close("hard");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("shows a timeline that could not be opened, and deletes it with its data", async () => {
    const res = await api.fetch("/v1/timelines/broken");
    const body = (await res.json()) as { state: string; error: string };
    assert.equal(res.status, 200);
    assert.equal(body.state, "failed");
    assert.match(body.error, /index\.json|JSON/);
    const reads = await api.fetch("/v1/timelines/broken/wait_lsn?lsn=0/0");
    assert.equal(reads.status, 503);
    const metrics = await (await api.fetch("/metrics")).text();
    assert.match(metrics, /^tideline_timelines\{state="failed"\} 1$/m);
    assert.match(metrics, /^tideline_timelines\{state="active"\} 2$/m);

    const del = await api.fetch("/v1/timelines/broken", { method: "DELETE" });
    assert.equal(del.status, 200, await del.clone().text());
    assert.equal(existsSync(join(dir, "timelines", "broken")), false, "its data is gone");
    assert.equal(existsSync(join(dir, "server", "timelines", "broken.json")), false);
    assert.equal((await api.fetch("/v1/timelines/broken")).status, 404);
  });

  it("two deletes of one timeline at once: one succeeds, the other is told why not", async () => {
    const [x, y] = await Promise.all([
      api.fetch("/v1/timelines/a", { method: "DELETE" }),
      api.fetch("/v1/timelines/a", { method: "DELETE" }),
    ]);
    const statuses = [x.status, y.status].sort();
    assert.equal(statuses[0], 200);
    assert.ok([404, 409].includes(statuses[1]!), `second delete: ${statuses[1]}`);
    assert.equal(existsSync(join(dir, "timelines", "a")), false);
  });

  it("caps the wait_lsn requests waiting on a timeline (429), not those already answered", async () => {
    const abort = new AbortController();
    const waits = [1, 2].map(() =>
      api
        .fetch("/v1/timelines/b/wait_lsn?lsn=FF/0&timeout_ms=600000", { signal: abort.signal })
        .catch(() => undefined),
    );
    const tl = api.service.get("b").timeline!;
    for (let i = 0; i < 200 && tl.waitLsnWaiters < 2; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(tl.waitLsnWaiters, 2);
    const third = await api.fetch("/v1/timelines/b/wait_lsn?lsn=FF/0&timeout_ms=600000");
    assert.equal(third.status, 429);
    assert.match(
      ((await third.json()) as { error: { message: string } }).error.message,
      /at most 2/,
    );
    // An LSN already reached needs no waiting, so it is answered even now.
    assert.equal((await api.fetch("/v1/timelines/b/wait_lsn?lsn=0/0")).status, 200);
    abort.abort();
    await Promise.all(waits);
    for (let i = 0; i < 200 && tl.waitLsnWaiters > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(tl.waitLsnWaiters, 0);
  });

  it("while the server shuts down: waits end with 503, new work is refused with 503", async () => {
    const pending = api.fetch("/v1/timelines/b/wait_lsn?lsn=FF/0&timeout_ms=600000");
    const tl = api.service.get("b").timeline!;
    for (let i = 0; i < 200 && tl.waitLsnWaiters === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(tl.waitLsnWaiters, 1);
    const stopping = api.service.shutdown("freeze-and-flush");
    const waited = await pending;
    assert.equal(waited.status, 503);
    assert.equal(
      ((await waited.json()) as { error: { code: string } }).error.code,
      "shutting_down",
    );
    const create = await postJson(api, "/v1/timelines", {
      id: "late",
      sources: ["postgres://postgres@127.0.0.1:1/postgres"],
    });
    assert.equal(create.status, 503);
    assert.equal((await api.fetch("/v1/timelines/b/wait_lsn?lsn=0/0")).status, 503);
    assert.equal((await api.fetch("/v1/timelines/b", { method: "DELETE" })).status, 503);
    const status = (await (await api.fetch("/v1/status")).json()) as { shuttingDown: boolean };
    assert.equal(status.shuttingDown, true);
    const results = await stopping;
    assert.deepEqual([...results.keys()], ["b"]);
    assert.equal(existsSync(join(dir, "timelines", "late")), false, "nothing was created");
  });
});
