/**
 * `tideline ingest`: stream one timeline from PostgreSQL until stopped.
 *
 * @module
 */
import type { Command } from "commander";
import {
  CancellationToken,
  CancelledError,
  RequestContext,
  spawn,
  TaskKind,
} from "../../../lifecycle/index.js";
import {
  attachTimeline,
  openRemoteStorage,
  RemoteLayerFetcher,
  type RemoteStorage,
  RemoteUploader,
} from "../../../remote/index.js";
import { checkLayerCompression, type LayerCompression, Timeline } from "../../../timeline/index.js";
import { formatLsn, type Lsn, parseLsn, segmentStart } from "../../../wal/index.js";
import {
  identifySources,
  parseSource,
  type Source,
  type SourceIdentity,
  WalReceiver,
} from "../../../walreceiver/index.js";
import { createLogger } from "../../log.js";
import { addLayerStorageOptions, lsnOption } from "./options.js";

interface IngestCliOptions {
  source: string[];
  dataDir: string;
  timeline: string;
  slot?: string;
  createSlot?: boolean;
  startLsn?: Lsn;
  endLsn?: Lsn;
  sync: boolean;
  compression: string;
  remote?: string;
  layerSize?: number;
}

/**
 * Rebuilds a timeline missing locally from remote storage, every layer downloaded (so the
 * data dir is complete for `export` and `restore-wal --data-dir`); `undefined` when remote
 * storage does not hold it either. SIGINT/SIGTERM (`token`) stops it.
 */
async function attach(
  remote: RemoteStorage,
  common: {
    dataDir: string;
    id: string;
    fsync: boolean;
    compression: LayerCompression;
    layerSize?: number;
  },
  token: CancellationToken,
  log: ReturnType<typeof createLogger>,
): Promise<Timeline | undefined> {
  log.info(
    { timeline: common.id, remote: remote.display },
    "looking for the timeline in remote storage",
  );
  return attachTimeline({
    ...common,
    storage: remote,
    ctx: RequestContext.root(TaskKind.Main, token),
    download: "all",
    retry: {
      onError: (error, attempt) =>
        log.warn({ error: (error as Error).message, attempt }, "download failed"),
    },
  });
}

/**
 * Runs `tideline ingest` until SIGINT/SIGTERM (freeze-and-flush; a second signal:
 * hard) or `--end-lsn`; returns the exit code.
 *
 * @example
 * ```ts
 * import { runIngest } from "./ingest.js";
 * process.exitCode = await runIngest({ source: ["postgres://postgres@127.0.0.1:5432/postgres"], dataDir: "/data", timeline: "main", sync: true, compression: "none" });
 * ```
 */
export async function runIngest(options: IngestCliOptions): Promise<number> {
  const log = createLogger();
  let sources: Source[];
  let remote: RemoteStorage | undefined;
  try {
    sources = options.source.map(parseSource);
    if (options.remote !== undefined) remote = await openRemoteStorage(options.remote);
  } catch (error) {
    process.stderr.write(`tideline ingest: ${(error as Error).message}\n`);
    return 2;
  }
  const root = new CancellationToken();
  let signals = 0;
  let timeline: Timeline | undefined;
  let requestStop!: (mode: "freeze-and-flush" | "hard") => void;
  const stopRequested = new Promise<"freeze-and-flush" | "hard">((resolve) => {
    requestStop = resolve;
  });
  const onSignal = (signal: string) => {
    signals++;
    if (timeline === undefined) {
      root.cancel(signal);
      return;
    }
    const mode = signals === 1 ? "freeze-and-flush" : "hard";
    log.info(
      { signal, mode },
      signals === 1 ? "shutting down: flushing (send again to stop at once)" : "stopping at once",
    );
    if (signals === 1) requestStop(mode);
    // Escalates the shutdown under way; its promise is the one the main path awaits below.
    else timeline.shutdown("hard").catch(() => {});
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let progress: ReturnType<typeof setInterval> | undefined;
  try {
    let id: SourceIdentity;
    try {
      id = await identifySources(sources, options.slot, root);
    } catch (error) {
      if (error instanceof CancelledError) return 130;
      process.stderr.write(`tideline ingest: ${(error as Error).message}\n`);
      return 1;
    }
    const common = {
      dataDir: options.dataDir,
      id: options.timeline,
      fsync: options.sync,
      compression: checkLayerCompression(options.compression),
      ...(options.layerSize !== undefined ? { layerSize: options.layerSize } : {}),
    };
    if (Timeline.exists(options.dataDir, options.timeline)) {
      timeline = await Timeline.open({
        ...common,
        // Layers evicted once uploaded come back from remote storage on read.
        ...(remote !== undefined ? { layerFetcher: new RemoteLayerFetcher(remote) } : {}),
      });
      log.info(
        { timeline: timeline.id, resumeAt: formatLsn(timeline.streamEnd) },
        "timeline reattached",
      );
    } else {
      if (remote !== undefined) {
        try {
          timeline = await attach(remote, common, root, log);
        } catch (error) {
          if (error instanceof CancelledError) return 130;
          process.stderr.write(
            `tideline ingest: cannot attach timeline "${options.timeline}" from ${remote.display}: ${(error as Error).message}\n`,
          );
          return 1;
        }
      }
      if (timeline !== undefined) {
        log.info(
          {
            timeline: timeline.id,
            remote: remote?.display,
            layers: timeline.layerFiles.length,
            resumeAt: formatLsn(timeline.streamEnd),
          },
          "timeline attached from remote storage",
        );
      }
    }
    if (timeline === undefined) {
      const from = options.startLsn ?? id.slotRestartLsn ?? id.xlogpos;
      const startLsn = segmentStart(from, id.segmentSize);
      timeline = await Timeline.create({
        ...common,
        startLsn,
        segmentSize: id.segmentSize,
        systemId: id.systemId,
        pgTimeline: id.timeline,
      });
      log.info(
        { timeline: timeline.id, startLsn: formatLsn(startLsn), systemId: String(id.systemId) },
        "timeline created",
      );
    }
    if (timeline.systemId !== 0n && timeline.systemId !== id.systemId) {
      await timeline.shutdown("hard");
      process.stderr.write(
        `tideline ingest: source ${id.source.display} is system ${id.systemId}, but timeline "${options.timeline}" holds WAL of system ${timeline.systemId}\n`,
      );
      return 1;
    }
    const tl = timeline;
    if (remote !== undefined) {
      const uploader = RemoteUploader.start(tl, remote, {
        onError: (error, attempt) =>
          log.warn({ error: (error as Error).message, attempt }, "upload failed"),
      });
      log.info({ remote: remote.display, uploads: uploader.task.name }, "uploading layers");
    }
    const receiver = WalReceiver.start(tl, {
      // The source hears as applied what is in remote storage (durable locally without one).
      ...(remote !== undefined ? { applyLsn: () => tl.remoteConsistentLsn } : {}),
      sources: options.source,
      ...(options.slot !== undefined ? { slot: options.slot } : {}),
      ...(options.createSlot ? { createSlot: true } : {}),
    });
    log.info({ timeline: tl.id, sources: sources.map((s) => s.display) }, "streaming");

    if (options.endLsn !== undefined) {
      const end = options.endLsn;
      spawn(
        { token: tl.cancel, gate: tl.gate, name: "stop at --end-lsn", kind: TaskKind.Background },
        async (tctx) => {
          await tl.waitLsn(end, tctx, { timeoutMs: 2 ** 31 - 1 });
          log.info({ endLsn: formatLsn(end) }, "reached --end-lsn");
          requestStop("freeze-and-flush");
        },
      );
    }

    const tty = process.stderr.isTTY === true;
    let lastBytes = tl.streamEnd;
    let lastAt = Date.now();
    progress = setInterval(
      () => {
        const now = Date.now();
        const rate = Number(tl.streamEnd - lastBytes) / ((now - lastAt) / 1000) / (1 << 20);
        lastBytes = tl.streamEnd;
        lastAt = now;
        const s = receiver.status();
        const flush = s.sourceFlushLsn;
        const lag = flush === undefined ? undefined : parseLsn(flush) - tl.lastRecordLsn;
        const fields = {
          lagMiB:
            lag === undefined
              ? undefined
              : Number((Number(lag > 0n ? lag : 0n) / (1 << 20)).toFixed(1)),
          lastRecordLsn: formatLsn(tl.lastRecordLsn),
          diskConsistentLsn: formatLsn(tl.diskConsistentLsn),
          mbPerSec: Number(rate.toFixed(1)),
          sourceFlushLsn: flush,
          source: s.source,
        };
        if (tty) {
          process.stderr.write(
            `\r\x1b[K${fields.lastRecordLsn} received, ${fields.diskConsistentLsn} durable, ${fields.mbPerSec} MB/s, lag ${fields.lagMiB ?? "?"} MiB`,
          );
        } else log.info(fields, "progress");
      },
      tty ? 1000 : 10_000,
    );

    // Run until a stop is asked for (signal or --end-lsn) or the receiver gives up.
    const ended = await Promise.race([receiver.task.join(), stopRequested]);
    if (typeof ended === "object" && ended.status === "failed") {
      log.error({ error: (ended.error as Error).message }, "WAL receiver stopped");
      await tl.shutdown("freeze-and-flush");
      return 1;
    }
    const result = await tl.shutdown(typeof ended === "string" ? ended : "freeze-and-flush");
    if (tty) process.stderr.write("\n");
    log.info(
      {
        mode: result.mode,
        lastRecordLsn: formatLsn(result.lastRecordLsn),
        diskConsistentLsn: formatLsn(result.diskConsistentLsn),
      },
      "stopped",
    );
    return 0;
  } finally {
    if (progress !== undefined) clearInterval(progress);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (timeline !== undefined) await timeline.shutdown("hard");
  }
}

/**
 * Registers `tideline ingest`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { registerIngest } from "./ingest.js";
 * registerIngest(new Command("tideline"));
 * ```
 */
export function registerIngest(program: Command): void {
  const command = program
    .command("ingest")
    .description("stream one timeline's WAL from PostgreSQL into the data directory")
    .requiredOption(
      "--source <conninfo>",
      "a PostgreSQL server to stream from (repeat for a primary and its standbys)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .requiredOption("--data-dir <dir>", "Tideline's data directory")
    .option(
      "--timeline <id>",
      "the timeline's id (created on first run, or attached from --remote; reattached after)",
      "main",
    )
    .option("--slot <name>", "stream through this physical replication slot")
    .option("--create-slot", "create the slot if it does not exist")
    .option("--start-lsn <lsn>", "a new timeline starts at the segment holding this LSN", lsnOption)
    .option("--end-lsn <lsn>", "stop by itself once WAL up to this LSN is durable", lsnOption);
  addLayerStorageOptions(command)
    .addHelpText(
      "after",
      `
A new timeline starts at a segment boundary: the one holding --start-lsn, else the slot's
restart LSN, else the server's current position. A reattached timeline resumes exactly
where its durable WAL ends. With --remote, a timeline missing from --data-dir (a new or
empty dir) is first looked for in remote storage: if it is there, it is rebuilt from the
remote index and layers (all downloaded) and resumes where the remote copy ends.
SIGINT/SIGTERM flushes everything received, then exits 0; a second signal stops at once
(unflushed WAL is streamed again next time).
The source reports flush = durable WAL only, so a slot never releases WAL Tideline
could still lose. Connection strings: postgres://user:password@host:port/db or
"host=... port=... user=...". The role needs REPLICATION and a pg_hba replication line.

Examples:
  tideline ingest --source postgres://replicator@127.0.0.1:5432/postgres --data-dir /var/lib/tideline
  tideline ingest --source "host=pg1 user=replicator" --source "host=pg2 user=replicator" \\
    --slot tideline --create-slot --data-dir /var/lib/tideline --end-lsn 3/0`,
    )
    .action(async (options: IngestCliOptions) => {
      process.exitCode = await runIngest(options);
    });
}
