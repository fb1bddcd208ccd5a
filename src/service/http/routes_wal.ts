/**
 * Reading a timeline over HTTP: raw WAL ranges, decoded records (NDJSON), a block's
 * history, and whole WAL files for `restore_command` (`tideline restore-wal --server`).
 *
 * @module
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { RequestContext } from "../../lifecycle/index.js";
import { type BlockKey, restoreWalFile, type Timeline } from "../../timeline/index.js";
import { type DumpRecordJson, formatLsn, type Lsn, parseLsn } from "../../wal/index.js";
import type { RouteContext } from "./app.js";
import { errorSchema, idParams } from "./app.js";
import { ApiError } from "./errors.js";
import { requestTaskName, runRequestTask, streamRequestTask } from "./request_task.js";

const FORKS = ["main", "fsm", "vm", "init"] as const;

const lsnParam = (description: string) => ({ type: "string", description }) as const;

function parseRel(text: string): { spc: number; db: number; rel: number } {
  const m = /^(\d{1,10})\/(\d{1,10})\/(\d{1,10})$/.exec(text);
  const parts = m === null ? [] : [Number(m[1]), Number(m[2]), Number(m[3])];
  if (m === null || parts.some((n) => n > 0xffff_ffff)) {
    throw new RangeError(
      `rel "${text}" is not a relation: expected spc/db/rel (three OIDs), e.g. 1663/5/16384`,
    );
  }
  return { spc: parts[0]!, db: parts[1]!, rel: parts[2]! };
}

function range(tl: Timeline, from: string | undefined, to: string | undefined): [Lsn, Lsn] {
  const f = from === undefined ? tl.startLsn : parseLsn(from);
  const t = to === undefined ? tl.streamEnd : parseLsn(to);
  if (f > t)
    throw new RangeError(`from ${formatLsn(f)} is after to ${formatLsn(t)}: expected from <= to`);
  return [f, t];
}

const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [c, errorSchema])) as Record<number, typeof errorSchema>;

/**
 * Registers the read routes.
 *
 * @example
 * ```ts
 * // registerWalRoutes(app, ctx);
 * ```
 */
export function registerWalRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const onFailure = (request: FastifyRequest, tl: Timeline) => (error: unknown) =>
    ctx.log.warn(
      {
        timeline: tl.id,
        task: requestTaskName(request),
        kind: "HttpRequest",
        error: (error as Error).message,
      },
      "response cut short",
    );
  /** Streams `produce`'s pieces from a task of `tl`. */
  const stream = (
    tl: Timeline,
    request: FastifyRequest,
    reply: FastifyReply,
    type: string,
    produce: (rctx: RequestContext) => AsyncIterable<Buffer | string>,
  ) =>
    streamRequestTask(
      { token: tl.cancel, gate: tl.gate },
      ctx.tasks,
      request,
      reply,
      type,
      produce,
      onFailure(request, tl),
    );

  app.get<{ Params: { id: string }; Querystring: { from?: string; to?: string } }>(
    "/v1/timelines/:id/wal",
    {
      schema: {
        summary: "Raw WAL bytes of [from, to), streamed",
        description:
          "Byte-exact with the source's pg_wal (page headers included). Defaults: from the timeline's start to the end of what was received. 400 when the range is outside what the timeline holds.",
        params: idParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            from: lsnParam("First LSN (inclusive)"),
            to: lsnParam("Last LSN (exclusive)"),
          },
        },
        response: {
          200: { description: "application/octet-stream", type: "string", format: "binary" },
          ...errors(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const tl = ctx.timeline(request.params.id);
      const [from, to] = range(tl, request.query.from, request.query.to);
      reply.header("x-tideline-from", formatLsn(from)).header("x-tideline-to", formatLsn(to));
      return stream(tl, request, reply, "application/octet-stream", (rctx) =>
        tl.walRange(from, to, rctx),
      );
    },
  );

  app.get<{
    Params: { id: string };
    Querystring: { from?: string; to?: string; rel?: string; fork?: string; blk?: number };
  }>(
    "/v1/timelines/:id/records",
    {
      schema: {
        summary: "Decoded records starting in [from, to), as NDJSON",
        description:
          "One JSON object per line, in `tideline waldump --json`'s shape. rel (spc/db/rel) keeps records touching that relation; with fork and blk, that one block (served from the block index).",
        params: idParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            from: lsnParam("First record LSN (inclusive); default the timeline's start"),
            to: lsnParam("End (exclusive); default the end of what was received"),
            rel: { type: "string", description: "spc/db/rel, e.g. 1663/5/16384" },
            fork: { type: "string", enum: [...FORKS] },
            blk: { type: "integer", minimum: 0, maximum: 4_294_967_295 },
          },
        },
        response: {
          200: { description: "application/x-ndjson", type: "string" },
          ...errors(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const tl = ctx.timeline(request.params.id);
      const [from, to] = range(tl, request.query.from, request.query.to);
      const { rel, fork, blk } = request.query;
      if (rel === undefined && (fork !== undefined || blk !== undefined)) {
        throw new RangeError("fork and blk need rel (spc/db/rel)");
      }
      const relKey = rel === undefined ? undefined : parseRel(rel);
      const forkNo = fork === undefined ? undefined : FORKS.indexOf(fork as (typeof FORKS)[number]);
      const block: BlockKey | undefined =
        relKey !== undefined && blk !== undefined
          ? { ...relKey, fork: forkNo ?? 0, blk }
          : undefined;
      const relText = rel === undefined ? undefined : `${relKey!.spc}/${relKey!.db}/${relKey!.rel}`;
      const keep = (r: DumpRecordJson) =>
        relText === undefined ||
        block !== undefined ||
        r.blocks.some((b) => b.rel === relText && (fork === undefined || b.fork === fork));
      async function* lines(rctx: RequestContext): AsyncGenerator<string> {
        let batch = "";
        for await (const r of tl.records(from, to, rctx, block)) {
          if (!keep(r)) continue;
          batch += `${JSON.stringify(r)}\n`;
          if (batch.length >= 64 * 1024) {
            yield batch;
            batch = "";
          }
        }
        if (batch !== "") yield batch;
      }
      return stream(tl, request, reply, "application/x-ndjson", lines);
    },
  );

  app.get<{
    Params: { id: string };
    Querystring: { rel: string; fork: string; blk: number; lsn?: string };
  }>(
    "/v1/timelines/:id/block_history",
    {
      schema: {
        summary: "The history of one block up to an LSN",
        description:
          "The newest record at or before lsn carrying a full-page image of the block (or initializing it), then every later record touching it; hasBaseImage says whether such a record was found.",
        params: idParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          required: ["rel", "blk"],
          properties: {
            rel: { type: "string", description: "spc/db/rel, e.g. 1663/5/16384" },
            fork: { type: "string", enum: [...FORKS], default: "main" },
            blk: { type: "integer", minimum: 0, maximum: 4_294_967_295 },
            lsn: lsnParam("Up to this LSN; default the last record received"),
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              hasBaseImage: { type: "boolean" },
              records: { type: "array", items: { type: "object" } },
            },
          },
          ...errors(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const tl = ctx.timeline(request.params.id);
      const key: BlockKey = {
        ...parseRel(request.query.rel),
        fork: FORKS.indexOf(request.query.fork as (typeof FORKS)[number]),
        blk: request.query.blk,
      };
      const upTo = request.query.lsn === undefined ? tl.lastRecordLsn : parseLsn(request.query.lsn);
      return runRequestTask(
        { token: tl.cancel, gate: tl.gate },
        ctx.tasks,
        request,
        reply,
        (rctx) => tl.blockHistory(key, upTo, rctx),
      );
    },
  );

  app.get<{ Params: { id: string; name: string } }>(
    "/v1/timelines/:id/wal_files/:name",
    {
      schema: {
        summary: "One WAL file by its pg_wal name, for restore_command",
        description:
          "A whole segment (000000010000000000000003) or a history file (00000002.history), byte-exact. 404 when the timeline does not hold it, as restore_command expects.",
        params: {
          type: "object",
          required: ["id", "name"],
          properties: {
            ...idParams.properties,
            name: { type: "string", pattern: "^[0-9A-Fa-f]{8}(\\.history|[0-9A-Fa-f]{16})$" },
          },
        },
        response: {
          200: { description: "application/octet-stream", type: "string", format: "binary" },
          ...errors(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const tl = ctx.timeline(request.params.id);
      const name = request.params.name;
      return stream(tl, request, reply, "application/octet-stream", async function* (rctx) {
        const dir = await mkdtemp(join(tmpdir(), "tideline-walfile-"));
        try {
          const path = join(dir, name);
          if (!(await restoreWalFile(tl, name, path, rctx))) {
            throw new ApiError(
              404,
              "not_found",
              `Timeline "${tl.id}" does not hold WAL file ${name}`,
              "wal_file",
            );
          }
          yield* createReadStream(path, { signal: rctx.token.signal });
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      });
    },
  );
}
