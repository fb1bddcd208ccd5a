/**
 * Every HTTP request runs as a task: named after its route, of kind `HttpRequest`, on a
 * child of its owner's token (the timeline's for a timeline's endpoints, the server's
 * otherwise) and holding its owner's gate. So a shutdown cancels the request's waits and
 * then waits for it, the request shows in the task tree, and a client that goes away
 * cancels what it asked for.
 *
 * @module
 */
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  CancelledError,
  type RequestContext,
  spawn,
  type Task,
  TaskKind,
  type TaskOwner,
  type TaskRegistry,
} from "../../lifecycle/index.js";

/**
 * Runs `body` as the request's task under `owner` and returns its result; throws what
 * it throws (`GateClosedError` when the owner is shutting down). If the client
 * disconnects before the response is sent, the task is cancelled.
 *
 * @example
 * ```ts
 * // const result = await runRequestTask(timeline, registry, request, reply, (ctx) => timeline.waitLsn(lsn, ctx));
 * ```
 */
export async function runRequestTask<T>(
  owner: TaskOwner,
  registry: TaskRegistry | undefined,
  request: FastifyRequest,
  reply: FastifyReply,
  body: (ctx: RequestContext) => Promise<T>,
): Promise<T> {
  const { task } = spawnForRequest(owner, registry, request, reply, body);
  const outcome = await task.join();
  if (outcome.status === "succeeded") return outcome.value;
  if (outcome.status === "failed") throw outcome.error;
  throw new CancelledError(task.token.reason);
}

/**
 * Spawns the request's task under `owner` and cancels it if the client disconnects before
 * the response is sent (also when it went before this ran: auth is async, so no close
 * event would come). `clientLeft()` says whether that happened.
 */
function spawnForRequest<T>(
  owner: TaskOwner,
  registry: TaskRegistry | undefined,
  request: FastifyRequest,
  reply: FastifyReply,
  body: (ctx: RequestContext) => Promise<T>,
): { task: Task<T>; clientLeft: () => boolean } {
  const task = spawn(
    {
      ...owner,
      ...(registry !== undefined ? { registry } : {}),
      name: requestTaskName(request),
      kind: TaskKind.HttpRequest,
    },
    body,
  );
  let left = false;
  const onClose = () => {
    if (reply.raw.writableFinished) return;
    left = true;
    task.cancel("client disconnected");
  };
  reply.raw.on("close", onClose);
  if (clientGone(request, reply)) onClose();
  task.onEnded(() => reply.raw.off("close", onClose));
  return { task, clientLeft: () => left };
}

/**
 * Streams what `produce` yields as the response body, from the request's task (see
 * {@linkcode runRequestTask}), with back-pressure. Errors before the first piece (a bad
 * range, say) throw here, so they become a JSON error response; a failure later can
 * only cut the response short, which a client notices (chunked encoding never ends).
 *
 * @example
 * ```ts
 * // return streamRequestTask(timeline, registry, request, reply, "application/octet-stream", (ctx) => timeline.walRange(from, to, ctx));
 * ```
 */
export async function streamRequestTask(
  owner: TaskOwner,
  registry: TaskRegistry | undefined,
  request: FastifyRequest,
  reply: FastifyReply,
  contentType: string,
  produce: (ctx: RequestContext) => AsyncIterable<Buffer | string>,
  onFailure: (error: unknown) => void = () => {},
): Promise<FastifyReply> {
  const out = new PassThrough();
  let ready!: () => void;
  const started = new Promise<"started">((resolve) => {
    ready = () => resolve("started");
  });
  const { task, clientLeft } = spawnForRequest(owner, registry, request, reply, async (ctx) => {
    const it = produce(ctx)[Symbol.asyncIterator]();
    const first = await it.next();
    ready();
    if (first.done === true) {
      out.end();
      return;
    }
    async function* rest() {
      try {
        yield first.value;
        for (let n = await it.next(); n.done !== true; n = await it.next()) yield n.value;
      } finally {
        // Closing `rest` (an aborted pipeline) must close the producer too, so its own
        // `finally` runs: gate guards, layer pins and temporary files are released.
        await it.return?.();
      }
    }
    await pipeline(rest(), out, { signal: ctx.token.signal });
  });
  task.onEnded((outcome) => {
    if (outcome.status === "failed" && !clientLeft() && !owner.token.isCancelled)
      onFailure(outcome.error);
  });
  const first = await Promise.race([started, task.join()]);
  if (first !== "started") {
    if (first.status === "failed") throw first.error;
    if (first.status === "cancelled") throw new CancelledError(task.token.reason);
  }
  reply.type(contentType);
  return reply.send(out);
}

/**
 * Whether the client's connection is already gone. (Not `request.raw.destroyed`: a request
 * is destroyed as soon as its body has been read, while the connection lives on.)
 */
function clientGone(request: FastifyRequest, reply: FastifyReply): boolean {
  return reply.raw.destroyed || request.raw.socket?.destroyed === true;
}

/**
 * The name of a request's task (and of its log lines): method, route and request id.
 *
 * @example
 * ```ts
 * // requestTaskName(request); // "GET /v1/timelines/:id/wait_lsn #req-7"
 * ```
 */
export function requestTaskName(request: FastifyRequest): string {
  return `${request.method} ${request.routeOptions.url ?? request.url} #${request.id}`;
}
