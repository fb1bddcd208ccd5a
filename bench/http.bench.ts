/**
 * The HTTP API of `tideline server`, in process, over loopback, on a timeline holding real
 * pgbench WAL (the same WAL as the timeline benchmark, 178 MiB):
 *
 * (a) `wait_lsn` for an LSN already reached: the round trip of one request on a kept-alive
 *     connection (auth off), 2,000 sequential requests, p50/p99;
 * (b) the same with auth on (an EdDSA JWT verified per request);
 * (c) `GET /wal` of the whole timeline: MB/s to the client;
 * (d) `GET /records` of the whole timeline (NDJSON): records/s to the client;
 * (e) `GET /records?rel=&blk=` of one block (served from the block index): latency.
 *
 * Its layer files are on local disk (page cache warm after the first read).
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importSPKI, SignJWT } from "jose";
import { CancellationToken, RequestContext, TaskKind } from "../src/lifecycle/index.js";
import { saveTimelineDefinition } from "../src/service/timeline_definition.js";
import { Timeline } from "../src/timeline/index.js";
import { formatLsn } from "../src/wal/index.js";
import { type Api, startApi } from "../test/service/api_harness.js";
import { loadWal, walDir } from "./wal_source.js";

const PIECE = 128 << 10;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function latency(api: Api, path: string, n: number, token?: string): Promise<string> {
  const times: number[] = [];
  for (let i = 0; i < n + 100; i++) {
    const t0 = performance.now();
    const res = await api.fetch(path, token === undefined ? {} : { token });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
    if (i >= 100) times.push(performance.now() - t0); // the first 100 warm up
  }
  times.sort((a, b) => a - b);
  const us = (ms: number) => `${Math.round(ms * 1000)} µs`;
  return `p50 ${us(quantile(times, 0.5))}, p99 ${us(quantile(times, 0.99))} (${n} requests)`;
}

async function main(): Promise<void> {
  const dir = await walDir();
  if (dir === undefined) {
    console.log("skipped: PostgreSQL 15 is not installed and no cached WAL");
    return;
  }
  const wal = loadWal(dir);
  const dataDir = mkdtempSync(join(tmpdir(), "tideline-bench-http-"));
  try {
    const ctx = RequestContext.root(TaskKind.UnitTest, new CancellationToken());
    const tl = await Timeline.create({
      dataDir,
      id: "bench",
      startLsn: wal.start,
      segmentSize: wal.segmentSize,
      fsync: false,
    });
    for (let off = 0; off < wal.bytes.length; off += PIECE) {
      const piece = wal.bytes.subarray(off, Math.min(off + PIECE, wal.bytes.length));
      await tl.ingest(wal.start + BigInt(off), piece, ctx);
    }
    await tl.flush(ctx);
    const end = tl.lastRecordLsn;
    await tl.shutdown("hard");
    // Its source is a port nothing listens on: the WAL receiver retries in the background.
    await saveTimelineDefinition(dataDir, {
      id: "bench",
      sources: ["postgres://postgres@127.0.0.1:1/postgres"],
      createdAt: new Date().toISOString(),
    });
    console.log(
      `timeline: ${(wal.bytes.length / 2 ** 20).toFixed(0)} MiB of WAL, ${wal.records.length} records, ${formatLsn(wal.start)}..${formatLsn(end)}`,
    );

    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const pem = publicKey.export({ type: "spki", format: "pem" }).toString();
    const token = await new SignJWT({ scope: "admin" })
      .setProtectedHeader({ alg: "EdDSA" })
      .setExpirationTime("1h")
      .sign(privateKey);
    for (const auth of [false, true]) {
      const api = await startApi(dataDir, auth ? { authKey: await importSPKI(pem, "EdDSA") } : {});
      try {
        const path = `/v1/timelines/bench/wait_lsn?lsn=${formatLsn(end)}`;
        console.log(
          `(${auth ? "b" : "a"}) wait_lsn, reached, auth ${auth ? "on" : "off"}: ${await latency(api, path, 2000, auth ? token : undefined)}`,
        );
        if (auth) continue;
        for (const rep of [1, 2]) {
          let t0 = performance.now();
          const w = await api.fetch("/v1/timelines/bench/wal");
          const bytes = (await w.arrayBuffer()).byteLength;
          let s = (performance.now() - t0) / 1000;
          console.log(
            `(c) GET /wal, run ${rep}: ${(bytes / 2 ** 20).toFixed(0)} MiB in ${s.toFixed(2)} s = ${(bytes / 1e6 / s).toFixed(0)} MB/s`,
          );
          t0 = performance.now();
          const r = await api.fetch("/v1/timelines/bench/records");
          const text = await r.text();
          s = (performance.now() - t0) / 1000;
          const n = text.length === 0 ? 0 : text.split("\n").length - 1;
          console.log(
            `(d) GET /records, run ${rep}: ${n} records (${(text.length / 2 ** 20).toFixed(0)} MiB NDJSON) in ${s.toFixed(2)} s = ${Math.round(n / s)} records/s`,
          );
        }
        // A block that many records touch: pgbench_accounts' first block, found in the stream.
        const first = (
          await (
            await api.fetch(`/v1/timelines/bench/records?to=${formatLsn(wal.start + (8n << 20n))}`)
          ).text()
        )
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as { blocks: { rel: string; blk: number; fork: string }[] })
          .flatMap((r) => r.blocks)
          .find((b) => b.fork === "main");
        if (first !== undefined) {
          const q = `/v1/timelines/bench/records?rel=${first.rel}&fork=main&blk=${first.blk}`;
          const n = (await (await api.fetch(q)).text()).split("\n").length - 1;
          console.log(
            `(e) records of block ${first.rel} blk ${first.blk} (${n} records): ${await latency(api, q, 200)}`,
          );
        }
      } finally {
        await api.close("hard");
      }
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
