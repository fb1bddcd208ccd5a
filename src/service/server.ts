/**
 * `tideline server`: many timelines and the HTTP API in one process, until a signal.
 *
 * @module
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import {
  CancellationToken,
  CancelledError,
  globalTaskRegistry,
  TaskKind,
  WAL_RECEIVER_KINDS,
} from "../lifecycle/index.js";
import { openRemoteStorage, type RemoteStorage } from "../remote/index.js";
import { acquireWriterLock, checkLayerCompression, TimelineInUseError } from "../timeline/index.js";
import { formatLsn } from "../wal/index.js";
import { buildApp } from "./http/app.js";
import { loadPublicKey, type VerifyKey } from "./http/auth.js";
import { createLogger } from "./log.js";
import { createServiceMetrics } from "./metrics.js";
import { TimelineService } from "./timeline_service.js";

/** Tasks whose failures their owners handle: the HTTP layer answers, downloads are retried. */
const HANDLED_KINDS: ReadonlySet<string> = new Set([TaskKind.HttpRequest, TaskKind.RemoteDownload]);

/** Options of {@linkcode runServer}, as `tideline server` takes them. */
export interface ServerOptions {
  dataDir: string;
  /** `host:port`; port 0 picks a free one (logged). */
  listen: string;
  remote?: string | undefined;
  authPublicKey?: string | undefined;
  sync: boolean;
  compression: string;
  /** Cut layer files at about this size. */
  layerSize?: number | undefined;
  /** Bytes of layer files kept locally per timeline (with `remote`). */
  localLayerLimit?: number | undefined;
}

/**
 * Parses `host:port` (IPv6 in brackets), throwing `RangeError` naming the value.
 *
 * @example
 * ```ts
 * import { parseListen } from "tideline/service";
 * console.log(parseListen("127.0.0.1:9898")); // { host: "127.0.0.1", port: 9898 }
 * ```
 */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = m === null ? Number.NaN : Number(m[3]);
  if (m === null || port > 65_535) {
    throw new RangeError(
      `Invalid --listen "${text}": expected host:port, e.g. 127.0.0.1:9898 or [::1]:9898`,
    );
  }
  return { host: m[1] ?? m[2]!, port };
}

/**
 * Runs the server until SIGINT/SIGTERM (freeze-and-flush every timeline, a few at a time;
 * a second signal: hard) and returns the exit code. Writes one line to stdout once it
 * listens: `listening on http://HOST:PORT`.
 *
 * @example
 * ```ts
 * import { runServer } from "tideline/service";
 * // process.exitCode = await runServer({ dataDir: "/var/lib/tideline", listen: "127.0.0.1:9898", sync: true, compression: "none" });
 * ```
 */
export async function runServer(options: ServerOptions): Promise<number> {
  const log = createLogger();
  let listen: { host: string; port: number };
  let remote: RemoteStorage | undefined;
  let authKey: VerifyKey | undefined;
  let compression: ReturnType<typeof checkLayerCompression>;
  try {
    listen = parseListen(options.listen);
    compression = checkLayerCompression(options.compression);
    if (options.remote !== undefined) remote = await openRemoteStorage(options.remote);
    if (options.authPublicKey !== undefined) authKey = await loadPublicKey(options.authPublicKey);
    if (options.localLayerLimit !== undefined && remote === undefined)
      throw new RangeError(
        "--local-layer-limit needs --remote: evicted layers come back from there",
      );
  } catch (error) {
    process.stderr.write(`tideline server: ${(error as Error).message}\n`);
    return 2;
  }
  const lockDir = join(options.dataDir, "server");
  await mkdir(lockDir, { recursive: true, mode: 0o700 });
  let releaseLock: () => Promise<void>;
  try {
    releaseLock = await acquireWriterLock(lockDir, "server");
  } catch (error) {
    process.stderr.write(
      error instanceof TimelineInUseError
        ? `tideline server: data directory ${options.dataDir} is in use by another tideline server (process ${error.pid})\n`
        : `tideline server: cannot lock ${lockDir}: ${(error as Error).message}\n`,
    );
    return 1;
  }

  let requestStop!: (mode: "freeze-and-flush" | "hard") => void;
  const stopRequested = new Promise<"freeze-and-flush" | "hard">((resolve) => {
    requestStop = resolve;
  });
  let signals = 0;
  let service: TimelineService | undefined;
  // Cancelled by a signal during start-up (attaching from remote storage may take long).
  const startup = new CancellationToken();
  const onSignal = (signal: string) => {
    signals++;
    if (service === undefined) {
      log.info({ signal }, "stopping: cancelling the start-up");
      startup.cancel(signal);
      return;
    }
    log.info(
      { signal },
      signals === 1
        ? "shutting down: flushing every timeline (send again to stop at once)"
        : "stopping at once",
    );
    if (signals === 1) requestStop("freeze-and-flush");
    // Escalates the shutdown under way: it returns the promise the main path awaits.
    else service.shutdown("hard").catch(() => undefined);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // A task that fails and that nobody joins would otherwise fail silently.
  globalTaskRegistry.observer = {
    taskEnded(info, error) {
      if (error instanceof CancelledError) return;
      // Their owners handle these failures (and log them): a trace at debug is enough.
      const handled = WAL_RECEIVER_KINDS.has(info.kind) || HANDLED_KINDS.has(info.kind);
      log[handled ? "debug" : "warn"](
        { task: info.name, kind: info.kind, error: `${error}` },
        "task failed",
      );
    },
  };
  let app: FastifyInstance | undefined;
  try {
    service = await TimelineService.start({
      dataDir: options.dataDir,
      remote,
      log,
      fsync: options.sync,
      compression,
      registry: globalTaskRegistry,
      localLayerLimit: options.localLayerLimit,
      layerSize: options.layerSize,
      parent: startup,
    });
    if (startup.isCancelled) {
      await service.shutdown("hard");
      return 130;
    }
    const metrics = createServiceMetrics(service, globalTaskRegistry);
    app = await buildApp({ service, log, metrics, tasks: globalTaskRegistry, authKey });
    try {
      await app.listen({ host: listen.host, port: listen.port });
    } catch (error) {
      process.stderr.write(
        `tideline server: cannot listen on ${options.listen}: ${(error as Error).message}\n`,
      );
      await service.shutdown("freeze-and-flush");
      return 1;
    }
    const address = app.server.address();
    const port = typeof address === "object" && address !== null ? address.port : listen.port;
    const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
    process.stdout.write(`listening on http://${host}:${port}\n`);
    log.info(
      {
        url: `http://${host}:${port}`,
        dataDir: options.dataDir,
        timelines: service.list().length,
        remote: remote?.display,
        auth: authKey !== undefined,
      },
      "listening",
    );
    const mode = signals > 1 ? "hard" : await stopRequested;
    const results = await service.shutdown(signals > 1 ? "hard" : mode);
    for (const [id, r] of results) {
      log.info(
        {
          timeline: id,
          mode: r.mode,
          lastRecordLsn: formatLsn(r.lastRecordLsn),
          diskConsistentLsn: formatLsn(r.diskConsistentLsn),
        },
        "timeline stopped",
      );
    }
    return 0;
  } catch (error) {
    log.error({ error: (error as Error).message }, "server failed");
    await service?.shutdown("hard").catch(() => undefined);
    return 1;
  } finally {
    await app?.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await releaseLock();
  }
}
