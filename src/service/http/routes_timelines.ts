/**
 * `/v1/timelines`: define, list, inspect, stop and delete timelines, and wait for an LSN.
 *
 * @module
 */
import type { FastifyInstance } from "fastify";
import { CancelledError, TimeoutError } from "../../lifecycle/index.js";
import { TimelineShutdownError } from "../../timeline/index.js";
import { formatLsn, type Lsn, parseLsn } from "../../wal/index.js";
import { parseSource } from "../../walreceiver/index.js";
import type { ServiceTimeline } from "../timeline_service.js";
import type { RouteContext } from "./app.js";
import { errorSchema, idParams } from "./app.js";
import { ApiError } from "./errors.js";
import { runRequestTask } from "./request_task.js";

/** A timeline as the API shows it (no password anywhere). */
export interface TimelineJson {
  id: string;
  state: string;
  error?: string;
  systemId: string | null;
  pgTimeline: number | null;
  pgVersion: number | null;
  segmentSize: number | null;
  startLsn: string | null;
  lastRecordLsn: string | null;
  diskConsistentLsn: string | null;
  remoteConsistentLsn: string | null;
  layers: number;
  frozenLayerBytes: number;
  sources: string[];
  slot: string | null;
  createdAt: string;
  walreceiver: unknown;
  history: { parent: number; timeline: number; switchLsn: string }[];
}

const lsnOrNull = (l: Lsn | undefined) => (l === undefined ? null : formatLsn(l));

/**
 * Renders one timeline for the API.
 *
 * @example
 * ```ts
 * // reply.send(timelineJson(service.get("main")));
 * ```
 */
export function timelineJson(entry: ServiceTimeline): TimelineJson {
  const tl = entry.timeline;
  const def = entry.definition;
  return {
    id: def.id,
    state: tl?.state ?? "failed",
    ...(entry.error !== undefined ? { error: entry.error } : {}),
    systemId: tl === undefined ? null : String(tl.systemId),
    pgTimeline: tl?.pgTimeline ?? null,
    pgVersion: tl === undefined || tl.pgVersion === 0 ? null : tl.pgVersion,
    segmentSize: tl?.segmentSize ?? null,
    startLsn: lsnOrNull(tl?.startLsn),
    lastRecordLsn: lsnOrNull(tl?.lastRecordLsn),
    diskConsistentLsn: lsnOrNull(tl?.diskConsistentLsn),
    remoteConsistentLsn: lsnOrNull(tl?.remoteConsistentLsn),
    layers: tl?.layerFiles.length ?? 0,
    frozenLayerBytes: tl?.frozenBytes ?? 0,
    sources: def.sources.map((s) => parseSource(s).display),
    slot: def.slot ?? null,
    createdAt: def.createdAt,
    walreceiver: tl?.state === "active" ? (entry.receiver?.status() ?? null) : null,
    history: (tl?.history ?? []).map((h) => ({
      parent: h.parent,
      timeline: h.timeline,
      switchLsn: formatLsn(h.switchLsn),
    })),
  };
}

const lsnString = {
  type: "string",
  description: "An LSN in PostgreSQL's form, e.g. 16/B374D848",
} as const;

const timelineSchema = {
  type: "object",
  properties: {
    id: { type: "string" },
    state: { type: "string", enum: ["active", "stopping", "stopped", "broken", "failed"] },
    error: { type: "string" },
    systemId: { type: "string", nullable: true },
    pgTimeline: { type: "integer", nullable: true },
    pgVersion: { type: "integer", nullable: true },
    segmentSize: { type: "integer", nullable: true },
    startLsn: { ...lsnString, nullable: true },
    lastRecordLsn: { ...lsnString, nullable: true },
    diskConsistentLsn: { ...lsnString, nullable: true },
    remoteConsistentLsn: { ...lsnString, nullable: true },
    layers: { type: "integer" },
    frozenLayerBytes: { type: "integer" },
    sources: { type: "array", items: { type: "string" } },
    slot: { type: "string", nullable: true },
    createdAt: { type: "string", format: "date-time" },
    walreceiver: {
      type: "object",
      nullable: true,
      description:
        "The current source (without password), its flush LSN, last message and WAL times, switches by reason, connection attempts and failures, every candidate source.",
    },
    history: { type: "array", items: { type: "object" } },
  },
} as const;

const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [c, errorSchema])) as Record<number, typeof errorSchema>;

/**
 * Registers the timeline routes.
 *
 * @example
 * ```ts
 * // registerTimelineRoutes(app, ctx);
 * ```
 */
export function registerTimelineRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { service } = ctx;
  const serverOwner = { token: service.token, gate: service.gate };

  app.get(
    "/v1/timelines",
    {
      schema: {
        summary: "List timelines",
        response: {
          200: {
            type: "object",
            properties: { timelines: { type: "array", items: timelineSchema } },
          },
        },
      },
    },
    async () => ({ timelines: service.list().map(timelineJson) }),
  );

  app.post<{
    Body: { id: string; sources: string[]; slot?: string; startLsn?: string };
  }>(
    "/v1/timelines",
    {
      schema: {
        summary: "Create a timeline and start streaming into it",
        description:
          "Asks the sources who they are (system id, segment size, position), creates the timeline at a segment boundary (the one holding startLsn, else the slot's restart LSN, else the source's current position), persists the definition and starts its WAL receiver.",
        body: {
          type: "object",
          additionalProperties: false,
          required: ["id", "sources"],
          properties: {
            id: {
              type: "string",
              pattern: "^[A-Za-z0-9_-]{1,64}$",
              description: "1 to 64 letters, digits, - or _",
            },
            sources: {
              type: "array",
              minItems: 1,
              maxItems: 16,
              items: { type: "string", minLength: 1, maxLength: 4096 },
              description:
                "Connection strings of a primary and its standbys (postgres://... or key=value)",
            },
            slot: { type: "string", description: "Physical replication slot, created if missing" },
            startLsn: lsnString,
          },
        },
        response: { 201: timelineSchema, ...errors(400, 409, 502, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const startLsn = body.startLsn === undefined ? undefined : parseLsn(body.startLsn);
      const entry = await runRequestTask(serverOwner, ctx.tasks, request, reply, (rctx) =>
        service.create(
          {
            id: body.id,
            sources: body.sources,
            ...(body.slot !== undefined ? { slot: body.slot } : {}),
            ...(startLsn !== undefined ? { startLsn } : {}),
          },
          rctx,
        ),
      );
      return reply.code(201).send(timelineJson(entry));
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/timelines/:id",
    {
      schema: {
        summary: "One timeline: state, LSNs, WAL receiver",
        params: idParams,
        response: { 200: timelineSchema, ...errors(400, 404) },
      },
    },
    async (request) => timelineJson(service.get(request.params.id)),
  );

  app.delete<{ Params: { id: string } }>(
    "/v1/timelines/:id",
    {
      schema: {
        summary: "Delete a timeline",
        description:
          "Stops it at once, forgets its definition and removes its local data. What was uploaded to remote storage is kept: it is the archive.",
        params: idParams,
        response: {
          200: {
            type: "object",
            properties: { id: { type: "string" }, deleted: { type: "boolean" } },
          },
          ...errors(400, 404, 409),
        },
      },
    },
    async (request, reply) => {
      // A task of the server (not of the timeline, whose gate the delete closes). The delete
      // itself runs to its end even if the client leaves: it is short and must not stop halfway.
      await runRequestTask(serverOwner, ctx.tasks, request, reply, () =>
        service.delete(request.params.id),
      );
      return { id: request.params.id, deleted: true };
    },
  );

  app.post<{ Params: { id: string }; Querystring: { mode: "hard" | "freeze-and-flush" } }>(
    "/v1/timelines/:id/shutdown",
    {
      schema: {
        summary: "Stop a timeline; returns when done",
        description:
          "freeze-and-flush stops just the WAL receiver, flushes everything received (and waits for the uploads), then stops; hard stops at once (unflushed WAL is streamed again at the next start). The timeline stays stopped until the server restarts.",
        params: idParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            mode: {
              type: "string",
              enum: ["hard", "freeze-and-flush"],
              default: "freeze-and-flush",
            },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              mode: { type: "string" },
              lastRecordLsn: lsnString,
              diskConsistentLsn: lsnString,
              remoteConsistentLsn: lsnString,
            },
          },
          ...errors(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      ctx.timeline(request.params.id);
      // A task of the server: a task of the timeline would wait for its own gate to close.
      const r = await runRequestTask(serverOwner, ctx.tasks, request, reply, () =>
        service.shutdownTimeline(request.params.id, request.query.mode),
      );
      return {
        mode: r.mode,
        lastRecordLsn: formatLsn(r.lastRecordLsn),
        diskConsistentLsn: formatLsn(r.diskConsistentLsn),
        remoteConsistentLsn: formatLsn(r.remoteConsistentLsn),
      };
    },
  );

  app.post<{ Params: { id: string } }>(
    "/v1/timelines/:id/start",
    {
      schema: {
        summary: "Start a stopped timeline again",
        description:
          "Reopens a timeline stopped by POST .../shutdown (or one that could not be opened at start: say, after fixing its disk) and starts its WAL receiver; 409 when it is running.",
        params: idParams,
        response: { 200: timelineSchema, ...errors(400, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      const entry = await runRequestTask(serverOwner, ctx.tasks, request, reply, (rctx) =>
        service.startTimeline(request.params.id, rctx),
      );
      return timelineJson(entry);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { lsn: string; timeout_ms: number } }>(
    "/v1/timelines/:id/wait_lsn",
    {
      schema: {
        summary: "Wait until WAL up to an LSN has been received",
        description:
          "200 once the timeline's lastRecordLsn reaches lsn; 504 after timeout_ms; 503 while the timeline shuts down; 429 when too many requests wait on the timeline already. The wait ends too when the client goes away.",
        params: idParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          required: ["lsn"],
          properties: {
            lsn: lsnString,
            timeout_ms: { type: "integer", minimum: 0, maximum: 2_147_483_647, default: 30_000 },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              lsn: lsnString,
              lastRecordLsn: lsnString,
              waitedMs: { type: "number" },
            },
          },
          ...errors(400, 404, 429, 503, 504),
        },
      },
    },
    async (request, reply) => {
      const lsn = parseLsn(request.query.lsn);
      const tl = ctx.timeline(request.params.id);
      const cap = ctx.maxWaitersPerTimeline ?? 10_000;
      if (tl.waitLsnWaiters >= cap && tl.lastRecordLsn < lsn) {
        throw new ApiError(
          429,
          "too_many_waiters",
          `Timeline "${tl.id}" already has ${tl.waitLsnWaiters} wait_lsn requests waiting (at most ${cap}); try again later`,
        );
      }
      const started = performance.now();
      let outcome = "error";
      try {
        await runRequestTask(
          { token: tl.cancel, gate: tl.gate },
          ctx.tasks,
          request,
          reply,
          (rctx) => tl.waitLsn(lsn, rctx, { timeoutMs: request.query.timeout_ms }),
        );
        outcome = "reached";
      } catch (error) {
        if (error instanceof TimeoutError) outcome = "timeout";
        else if (error instanceof TimelineShutdownError) outcome = "shutdown";
        else if (error instanceof CancelledError)
          outcome = tl.state === "active" ? "cancelled" : "shutdown";
        throw error;
      } finally {
        ctx.metrics.observeWaitLsn(tl.id, outcome, (performance.now() - started) / 1000);
      }
      return {
        lsn: formatLsn(lsn),
        lastRecordLsn: formatLsn(tl.lastRecordLsn),
        waitedMs: Math.round((performance.now() - started) * 1000) / 1000,
      };
    },
  );
}
