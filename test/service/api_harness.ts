/**
 * An in-process `tideline server` for tests: the real TimelineService and HTTP app,
 * listening on a free port of 127.0.0.1, with a log captured in memory.
 */
import { Writable } from "node:stream";
import pino from "pino";
import type { TaskRegistry } from "../../src/lifecycle/index.js";
import { globalTaskRegistry } from "../../src/lifecycle/index.js";
import type { RemoteStorage } from "../../src/remote/index.js";
import { buildApp } from "../../src/service/http/app.js";
import type { VerifyKey } from "../../src/service/http/auth.js";
import { createServiceMetrics } from "../../src/service/metrics.js";
import { saveTimelineDefinition } from "../../src/service/timeline_definition.js";
import { TimelineService } from "../../src/service/timeline_service.js";
import { Timeline } from "../../src/timeline/index.js";

/** A running API. */
export interface Api {
  url: string;
  service: TimelineService;
  tasks: TaskRegistry;
  /** Every log line so far. */
  logs: string[];
  /** `fetch` relative to the API, with an optional bearer token. */
  fetch(path: string, init?: RequestInit & { token?: string }): Promise<Response>;
  /** Freeze-and-flush every timeline (unless already stopped) and close the listener. */
  close(mode?: "hard" | "freeze-and-flush"): Promise<void>;
}

/** Starts the service over `dataDir` and its API. */
export async function startApi(
  dataDir: string,
  options: {
    authKey?: VerifyKey;
    remote?: RemoteStorage;
    layerSize?: number;
    localLayerLimit?: number;
    maxWaitersPerTimeline?: number;
  } = {},
): Promise<Api> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line !== "") logs.push(line);
      done();
    },
  });
  const log = pino({ level: "debug", base: null }, sink);
  const tasks = globalTaskRegistry;
  const service = await TimelineService.start({
    dataDir,
    log,
    fsync: false,
    registry: tasks,
    ...(options.remote !== undefined ? { remote: options.remote } : {}),
    layerSize: options.layerSize,
    localLayerLimit: options.localLayerLimit,
  });
  const metrics = createServiceMetrics(service, tasks);
  const app = await buildApp({
    service,
    log,
    metrics,
    tasks,
    authKey: options.authKey,
    maxWaitersPerTimeline: options.maxWaitersPerTimeline,
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  const url = `http://127.0.0.1:${port}`;
  let closed = false;
  return {
    url,
    service,
    tasks,
    logs,
    fetch(path, init = {}) {
      const { token, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
      return fetch(`${url}${path}`, { ...rest, headers });
    },
    async close(mode = "freeze-and-flush") {
      if (closed) return;
      closed = true;
      await service.shutdown(mode);
      await app.close();
    },
  };
}

/** POSTs JSON. */
export function postJson(api: Api, path: string, body: unknown, token?: string) {
  return api.fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...(token !== undefined ? { token } : {}),
  });
}

/**
 * Puts a timeline into `dataDir` as `POST /v1/timelines` would have, without a source:
 * an empty timeline starting at 0/1000000 and a definition naming `source` (default: a
 * port nothing listens on, so its WAL receiver keeps failing to connect).
 */
export async function fabricateTimeline(
  dataDir: string,
  id: string,
  source = "postgres://postgres@127.0.0.1:1/postgres",
): Promise<void> {
  const tl = await Timeline.create({ dataDir, id, startLsn: 0x1000000n, fsync: false });
  await tl.shutdown("hard");
  await saveTimelineDefinition(dataDir, {
    id,
    sources: [source],
    createdAt: new Date().toISOString(),
  });
}
