/**
 * Prometheus metrics of a `tideline server`, read from the live objects at each scrape
 * (no bookkeeping on the hot path), all named `tideline_…`.
 *
 * @module
 */
import client from "prom-client";
import type { TaskRegistry, TaskTreeNode } from "../lifecycle/index.js";
import { parseLsn } from "../wal/index.js";
import type { TimelineService } from "./timeline_service.js";

/** The metrics of one server: its registry, and what the HTTP layer observes itself. */
export interface ServiceMetrics {
  /** Render with `await registry.metrics()`. */
  readonly registry: client.Registry;
  /** Records how long a `wait_lsn` request waited, and how it ended. */
  observeWaitLsn(timeline: string, outcome: string, seconds: number): void;
  /** HTTP responses by method, route and status. */
  readonly httpRequests: client.Counter<"method" | "route" | "status">;
}

const PREFIX = "tideline_";
const WAIT_OUTCOMES = ["reached", "timeout", "shutdown", "cancelled", "error"];

/**
 * Creates the metrics of `service` in a registry of their own (so two servers in one
 * process, as in tests, do not mix), with Node.js process metrics too.
 *
 * @example
 * ```ts
 * import { createServiceMetrics } from "tideline/service";
 * // const metrics = createServiceMetrics(service, globalTaskRegistry);
 * // console.log(await metrics.registry.metrics());
 * ```
 */
export function createServiceMetrics(
  service: TimelineService,
  tasks: TaskRegistry,
): ServiceMetrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: PREFIX });
  const timelines = () =>
    service.list().flatMap((e) => (e.timeline === undefined ? [] : [{ e, tl: e.timeline }]));
  const num = (v: bigint) => Number(v);
  type Live = ReturnType<typeof timelines>[number];

  /**
   * One value per timeline, read from the live objects at each scrape. A counter's value
   * is the object's own count since this process opened the timeline, so it only grows.
   */
  const perTimeline = (
    type: "gauge" | "counter",
    name: string,
    help: string,
    read: (t: Live) => number | bigint | undefined,
  ) => {
    const config = {
      name: `${PREFIX}${name}`,
      help,
      labelNames: ["timeline"],
      registers: [registry],
    };
    const values = () =>
      timelines().flatMap((t) => {
        const v = read(t);
        return v === undefined ? [] : [{ timeline: t.e.definition.id, value: Number(v) }];
      });
    if (type === "gauge") {
      new client.Gauge({
        ...config,
        collect() {
          this.reset();
          for (const { timeline, value } of values()) this.set({ timeline }, value);
        },
      });
    } else {
      new client.Counter({
        ...config,
        collect() {
          this.reset();
          for (const { timeline, value } of values()) this.inc({ timeline }, value);
        },
      });
    }
  };
  const sourceFlush = (t: Live) => {
    const f = t.e.receiver?.status().sourceFlushLsn;
    return f === undefined ? undefined : parseLsn(f);
  };

  perTimeline(
    "gauge",
    "timeline_last_record_lsn",
    "End of the last complete record received (LSN as a byte position).",
    (t) => t.tl.lastRecordLsn,
  );
  perTimeline(
    "gauge",
    "timeline_disk_consistent_lsn",
    "WAL durable in local layer files up to this LSN.",
    (t) => t.tl.diskConsistentLsn,
  );
  perTimeline(
    "gauge",
    "timeline_remote_consistent_lsn",
    "WAL durable in remote storage up to this LSN.",
    (t) => t.tl.remoteConsistentLsn,
  );
  perTimeline(
    "gauge",
    "timeline_source_flush_lsn",
    "The streaming source's flush LSN, as last reported.",
    sourceFlush,
  );
  perTimeline(
    "gauge",
    "timeline_frozen_layer_bytes",
    "Bytes in frozen in-memory layers awaiting flush.",
    (t) => t.tl.frozenBytes,
  );
  perTimeline(
    "gauge",
    "timeline_frozen_layers",
    "Frozen in-memory layers awaiting flush.",
    (t) => t.tl.frozenLayers,
  );
  perTimeline(
    "gauge",
    "timeline_open_layer_bytes",
    "Bytes in the open in-memory layer.",
    (t) => t.tl.openLayerBytes,
  );
  perTimeline(
    "gauge",
    "wait_lsn_waiters",
    "wait_lsn calls waiting now.",
    (t) => t.tl.waitLsnWaiters,
  );
  perTimeline(
    "counter",
    "timeline_ingested_bytes_total",
    "WAL bytes received since the timeline was opened.",
    (t) => (t.e.openedAt === undefined ? undefined : t.tl.streamEnd - t.e.openedAt),
  );
  perTimeline(
    "counter",
    "timeline_ingested_records_total",
    "WAL records decoded and indexed since the timeline was opened.",
    (t) => t.tl.recordsIngested,
  );
  perTimeline(
    "counter",
    "timeline_layers_flushed_total",
    "Layer files written.",
    (t) => t.tl.layersFlushed,
  );
  perTimeline(
    "counter",
    "timeline_layers_uploaded_total",
    "Layer files uploaded to remote storage.",
    (t) => t.e.uploader?.uploads,
  );
  perTimeline(
    "counter",
    "timeline_upload_failures_total",
    "Failed upload attempts (retried when transient).",
    (t) => t.e.uploader?.failures,
  );
  perTimeline(
    "counter",
    "walreceiver_connection_attempts_total",
    "Replication connections started.",
    (t) => t.e.receiver?.status().connectionAttempts,
  );
  perTimeline(
    "counter",
    "walreceiver_connection_failures_total",
    "Replication connections that failed.",
    (t) => t.e.receiver?.status().connectionFailures,
  );

  new client.Gauge({
    name: `${PREFIX}timeline_lag_bytes`,
    help: "Lags in bytes: source (source flush - last record), disk (last record - disk consistent), remote (disk - remote consistent).",
    labelNames: ["timeline", "lag"],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of timelines()) {
        const { e, tl } = t;
        const id = e.definition.id;
        const f = sourceFlush(t);
        if (f !== undefined) {
          const lag = f - tl.lastRecordLsn;
          this.set({ timeline: id, lag: "source" }, num(lag > 0n ? lag : 0n));
        }
        this.set({ timeline: id, lag: "disk" }, num(tl.lastRecordLsn - tl.diskConsistentLsn));
        if (service.remote !== undefined) {
          const r = tl.diskConsistentLsn - tl.remoteConsistentLsn;
          this.set({ timeline: id, lag: "remote" }, num(r > 0n ? r : 0n));
        }
      }
    },
  });

  new client.Counter({
    name: `${PREFIX}walreceiver_switches_total`,
    help: "WAL receiver (re)connections by reason (Neon's switch reasons).",
    labelNames: ["timeline", "reason"],
    registers: [registry],
    collect() {
      this.reset();
      for (const { e } of timelines()) {
        const switches = e.receiver?.status().switches ?? {};
        for (const [reason, n] of Object.entries(switches))
          if (n !== undefined) this.inc({ timeline: e.definition.id, reason }, n);
      }
    },
  });

  new client.Gauge({
    name: `${PREFIX}timelines`,
    help: "Timelines by state.",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.reset();
      const by = new Map<string, number>();
      for (const e of service.list()) {
        const state = e.timeline?.state ?? "failed";
        by.set(state, (by.get(state) ?? 0) + 1);
      }
      for (const [state, n] of by) this.set({ state }, n);
    },
  });

  new client.Gauge({
    name: `${PREFIX}tasks`,
    help: "Live tasks by kind.",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      this.reset();
      const by = new Map<string, number>();
      const walk = (nodes: readonly TaskTreeNode[]) => {
        for (const n of nodes) {
          by.set(n.kind, (by.get(n.kind) ?? 0) + 1);
          walk(n.children);
        }
      };
      walk(tasks.tree());
      for (const [kind, n] of by) this.set({ kind }, n);
    },
  });

  const observed = new Set<string>();
  const waitLsnSeconds = new client.Histogram({
    name: `${PREFIX}wait_lsn_duration_seconds`,
    help: "How long wait_lsn requests waited, by outcome (reached, timeout, shutdown, cancelled by the client, error).",
    labelNames: ["timeline", "outcome"] as const,
    buckets: [0.0001, 0.001, 0.01, 0.1, 0.5, 1, 5, 30, 120],
    registers: [registry],
    collect() {
      // A deleted timeline's series go with it.
      const live = new Set(service.list().map((e) => e.definition.id));
      for (const id of observed) {
        if (live.has(id)) continue;
        for (const outcome of WAIT_OUTCOMES) this.remove({ timeline: id, outcome });
        observed.delete(id);
      }
    },
  });

  const httpRequests = new client.Counter({
    name: `${PREFIX}http_requests_total`,
    help: "HTTP responses by method, route and status code.",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  return {
    registry,
    httpRequests,
    observeWaitLsn(timeline, outcome, seconds) {
      observed.add(timeline);
      waitLsnSeconds.observe({ timeline, outcome }, seconds);
    },
  };
}
