/**
 * The HTTP API of `tideline server` (Fastify): routes, validation, errors, auth, the
 * OpenAPI document and metrics. Every request runs as a task of the timeline (or the
 * server) it concerns; see `request_task.ts`.
 *
 * @module
 */
import swagger from "@fastify/swagger";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { TaskRegistry, TaskTreeNode } from "../../lifecycle/index.js";
import type { Timeline } from "../../timeline/index.js";
import type { Logger } from "../log.js";
import type { ServiceMetrics } from "../metrics.js";
import type { TimelineService } from "../timeline_service.js";
import { VERSION } from "../version.js";
import { checkScope, type TokenScope, type VerifyKey, verifyAuthorization } from "./auth.js";
import { ApiError, toApiError } from "./errors.js";
import { requestTaskName } from "./request_task.js";
import { registerTimelineRoutes } from "./routes_timelines.js";
import { registerWalRoutes } from "./routes_wal.js";

/** What the routes need. */
export interface AppOptions {
  service: TimelineService;
  log: Logger;
  metrics: ServiceMetrics;
  /** The registry whose tasks `GET /v1/tasks` shows (and requests register in). */
  tasks: TaskRegistry;
  /** With a key, every endpoint but `/v1/status` and `/metrics` needs a bearer token. */
  authKey?: VerifyKey | undefined;
  /** Largest request body, in bytes. Default 64 KiB. */
  bodyLimit?: number | undefined;
  /** `wait_lsn` requests waiting at once per timeline; more get 429. Default 10 000. */
  maxWaitersPerTimeline?: number | undefined;
}

/** The parts of {@linkcode AppOptions} routes use, plus helpers. */
export interface RouteContext extends AppOptions {
  /** The open timeline `id` names: 404 when unknown, 503 when it could not be opened. */
  timeline(id: string): Timeline;
}

declare module "fastify" {
  interface FastifyRequest {
    /** The verified token's scope, when auth is on. */
    tokenScope?: TokenScope;
  }
}

const PUBLIC_ROUTES = new Set(["/v1/status", "/metrics"]);

/** Error object schema shared by every route's error responses. */
export const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: {
        code: { type: "string" },
        message: { type: "string" },
        what: {
          type: "string",
          description:
            'With code "not_found": what does not exist, "timeline", "wal_file" or "route" (a client such as restore-wal tells a wrong timeline id or URL from a file not held yet)',
        },
      },
      required: ["code", "message"],
    },
  },
  required: ["error"],
} as const;

/** A timeline id in a path. */
export const idParams = {
  type: "object",
  properties: {
    id: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$", description: "Timeline id" },
  },
  required: ["id"],
} as const;

function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  if (first === undefined) return error.message;
  const where = `${error.validationContext ?? "request"}${first.instancePath.replaceAll("/", ".")}`;
  const params = first.params as Record<string, unknown>;
  const extra =
    typeof params.additionalProperty === "string"
      ? ` (unknown "${params.additionalProperty}")`
      : typeof params.missingProperty === "string"
        ? ` ("${params.missingProperty}")`
        : "";
  return `${where} ${first.message ?? "is invalid"}${extra}`;
}

/**
 * Builds the API (not listening yet: call `listen`).
 *
 * @example
 * ```ts
 * import { buildApp } from "tideline/service";
 * // const app = await buildApp({ service, log, metrics, tasks: globalTaskRegistry });
 * // await app.listen({ host: "127.0.0.1", port: 9898 });
 * ```
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { service, log, metrics, authKey } = options;
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Requests are logged by our own onResponse hook (at debug, with the route).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit ?? 64 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", allErrors: false } },
    return503OnClosing: true,
    // No automatic HEAD routes: a HEAD of /wal would read (even download) everything.
    exposeHeadRoutes: false,
  });
  // Response schemas document the API; the bodies themselves are plain JSON.stringify,
  // so no field is ever dropped by a schema that forgot it.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // Bodies are JSON only: anything else is 415, not a string that fails validation.
  app.removeContentTypeParser("text/plain");

  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "Tideline",
        version: VERSION,
        description:
          'Streams PostgreSQL\'s write-ahead log into durable, queryable timelines. LSNs are strings in PostgreSQL\'s form (16/B374D848). Errors are {"error":{"code","message"}}.',
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
      },
      ...(authKey !== undefined ? { security: [{ bearer: [] }] } : {}),
    },
  });

  app.addHook("onRequest", async (request: FastifyRequest) => {
    const route = request.routeOptions.url;
    if (authKey === undefined || (route !== undefined && PUBLIC_ROUTES.has(route))) return;
    const scope = await verifyAuthorization(request.headers.authorization, authKey);
    request.tokenScope = scope;
    if (route === "/openapi.json") return;
    const id = (request.params as { id?: unknown } | undefined)?.id;
    checkScope(scope, route?.includes(":id") === true && typeof id === "string" ? id : undefined);
  });

  app.addHook("onResponse", async (request: FastifyRequest, reply: FastifyReply) => {
    const route = request.routeOptions.url ?? "unmatched";
    metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    log.debug(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      "http request",
    );
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    let api: ApiError;
    if (error.validation !== undefined) {
      api = new ApiError(400, "bad_request", validationMessage(error));
    } else if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      api = new ApiError(415, "unsupported_media_type", error.message);
    } else if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      api = new ApiError(413, "payload_too_large", error.message);
    } else if (
      typeof error.code === "string" &&
      error.code.startsWith("FST_ERR_") &&
      typeof error.statusCode === "number" &&
      error.statusCode >= 400 &&
      error.statusCode < 500
    ) {
      api = new ApiError(error.statusCode, "bad_request", error.message);
    } else if (error instanceof SyntaxError && error.statusCode === 400) {
      api = new ApiError(400, "bad_request", `Body is not valid JSON: ${error.message}`);
    } else {
      api = toApiError(error);
    }
    if (api.status >= 500 && api.status !== 503 && api.status !== 504 && api.status !== 502) {
      const id = (request.params as { id?: unknown } | undefined)?.id;
      log.error(
        {
          err: error,
          method: request.method,
          url: request.url,
          ...(typeof id === "string" ? { timeline: id } : {}),
          task: requestTaskName(request),
          kind: "HttpRequest",
        },
        "request failed",
      );
    }
    if (reply.sent || reply.raw.headersSent) return reply;
    return reply.code(api.status).type("application/json").send(api.toBody());
  });

  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .send(
        new ApiError(
          404,
          "not_found",
          `No route ${request.method} ${request.url}`,
          "route",
        ).toBody(),
      ),
  );

  const ctx: RouteContext = {
    ...options,
    timeline(id: string): Timeline {
      const entry = service.get(id);
      if (entry.timeline === undefined) {
        throw new ApiError(
          503,
          "unavailable",
          `Timeline "${id}" is not running: ${entry.error ?? "it could not be opened"}`,
        );
      }
      return entry.timeline;
    },
  };

  const startedAt = Date.now();
  app.get(
    "/v1/status",
    {
      schema: {
        summary: "Server status (no auth needed)",
        response: {
          200: {
            type: "object",
            properties: {
              version: { type: "string" },
              startedAt: { type: "string", format: "date-time" },
              uptimeSeconds: { type: "number" },
              timelines: { type: "integer" },
              shuttingDown: { type: "boolean" },
            },
          },
        },
      },
    },
    async () => ({
      version: VERSION,
      startedAt: new Date(startedAt).toISOString(),
      uptimeSeconds: (Date.now() - startedAt) / 1000,
      timelines: service.list().length,
      shuttingDown: service.isShuttingDown,
    }),
  );

  app.get(
    "/v1/tasks",
    {
      schema: {
        summary: "The live task tree",
        description:
          "Every live task with id, name, kind, state, start time and children: each timeline's WAL receiver manager, connection handler and poller, uploads, flushes and requests.",
        response: { 200: { type: "object", properties: { tasks: { type: "array" } } } },
      },
    },
    async () => ({
      tasks: renderTree(options.tasks.tree()),
    }),
  );

  app.get(
    "/metrics",
    { schema: { summary: "Prometheus metrics (no auth needed)", hide: false } },
    async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    },
  );

  app.get("/openapi.json", { schema: { summary: "This API as an OpenAPI 3 document" } }, async () =>
    app.swagger(),
  );

  registerTimelineRoutes(app, ctx);
  registerWalRoutes(app, ctx);
  return app;
}

interface RenderedTask {
  id: number;
  name: string;
  kind: string;
  state: string;
  startedAt: string;
  gate: string;
  children: RenderedTask[];
}

function renderTree(nodes: readonly TaskTreeNode[]): RenderedTask[] {
  return nodes.map((n) => ({
    id: n.id,
    name: n.name,
    kind: n.kind,
    state: n.state,
    startedAt: new Date(n.startedAt).toISOString(),
    gate: n.gate,
    children: renderTree(n.children),
  }));
}
