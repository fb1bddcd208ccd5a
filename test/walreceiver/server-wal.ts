/**
 * Helpers of the failover and resilience tests: a server's WAL bytes read from its pg_wal
 * files, bounded polling, and the `tideline` CLI as a child process.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import type { Timeline } from "../../src/timeline/index.js";
import {
  formatLsn,
  type Lsn,
  parseLsn,
  segmentFileName,
  segmentNumber,
  segmentStartLsn,
} from "../../src/wal/index.js";
import type { Cluster } from "../support/postgres.js";
import { testContext } from "../timeline/source.js";

export const BIN = "dist/cli/main.js";

export const url = (pg: Cluster) => `postgres://postgres@127.0.0.1:${pg.port}/postgres`;

/** The pg_wal file holding segment `segno` on the highest timeline present (whole before `.partial`). */
export function serverSegmentFile(pg: Cluster, segno: bigint): string {
  const suffix = segmentFileName(1, segno, pg.segmentSize).slice(8);
  const names = readdirSync(pg.walDir).filter(
    (n) => /^[0-9A-F]{24}(\.partial)?$/.test(n) && n.slice(8, 24) === suffix,
  );
  names.sort((a, b) => {
    const ta = a.slice(0, 8);
    const tb = b.slice(0, 8);
    if (ta !== tb) return ta < tb ? 1 : -1;
    return a.endsWith(".partial") ? 1 : b.endsWith(".partial") ? -1 : 0;
  });
  const name = names[0];
  assert.ok(name !== undefined, `segment ${suffix} is in ${pg.walDir}`);
  return name;
}

/** The server's WAL bytes of `[from, to)`, read from its pg_wal segment files (newest timeline). */
export function serverWal(pg: Cluster, from: Lsn, to: Lsn): Buffer {
  const size = pg.segmentSize;
  const pieces: Buffer[] = [];
  for (let segno = segmentNumber(from, size); from < to; segno++) {
    const start = segmentStartLsn(segno, size);
    const end = start + BigInt(size) < to ? start + BigInt(size) : to;
    const file = readFileSync(join(pg.walDir, serverSegmentFile(pg, segno)));
    pieces.push(file.subarray(Number(from - start), Number(end - start)));
    from = end;
  }
  return Buffer.concat(pieces);
}

/** Index of the first differing byte, or -1. */
export function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Polls `check` every 50 ms until it is true; fails with `what()` after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: () => string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`not reached within ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A `tideline` child process. */
export interface CliRun {
  child: ChildProcess;
  done: Promise<{
    status: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>;
}

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** Starts `node dist/cli/main.js ...args`. */
export function cli(args: string[]): CliRun {
  assert.ok(existsSync(BIN), `${BIN} is built (npm run build)`);
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const done = new Promise<{
    status: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve) =>
    child.on("close", (status, signal) => {
      children.delete(child);
      resolve({ status, signal, stdout, stderr });
    }),
  );
  return { child, done };
}

/** Kills a child (SIGKILL) if it still runs and waits for it. */
export async function killChild(run: CliRun | undefined): Promise<void> {
  if (run === undefined) return;
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
  await run.done;
}

/** A TCP proxy to a local server whose server-to-client direction is throttled and can be held. */
export interface ThrottledProxy {
  readonly port: number;
  /** Stops forwarding server-to-client bytes (the connections stay open). */
  hold(): void;
  /** Closes the listener and every proxied connection. */
  close(): void;
}

/** Starts a proxy to 127.0.0.1:`targetPort` forwarding at most `bytesPerTick` every 20 ms. */
export function throttledProxy(
  targetPort: number,
  bytesPerTick = 64 << 10,
): Promise<ThrottledProxy> {
  let held = false;
  const closers = new Set<() => void>();
  const server = createServer((client: Socket) => {
    const upstream = createConnection({ host: "127.0.0.1", port: targetPort });
    client.pipe(upstream);
    const queue: Buffer[] = [];
    upstream.on("data", (d: Buffer) => {
      queue.push(d);
      upstream.pause();
    });
    const timer = setInterval(() => {
      if (held) return;
      let budget = bytesPerTick;
      while (queue.length > 0 && budget > 0) {
        const b = queue.shift()!;
        const n = Math.min(b.length, budget);
        client.write(b.subarray(0, n));
        if (n < b.length) queue.unshift(b.subarray(n));
        budget -= n;
      }
      if (queue.length === 0) upstream.resume();
    }, 20);
    const end = () => {
      clearInterval(timer);
      client.destroy();
      upstream.destroy();
      closers.delete(end);
    };
    closers.add(end);
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      resolve({
        port: typeof a === "object" && a !== null ? a.port : 0,
        hold: () => {
          held = true;
        },
        close: () => {
          server.close();
          for (const end of [...closers]) end();
        },
      });
    });
  });
}

/** The LSN a SQL function returns, e.g. `lsnOf(pg, "pg_current_wal_lsn()")`. */
export async function lsnOf(pg: Cluster, fn: string): Promise<Lsn> {
  return parseLsn(await pg.sql(`SELECT ${fn}`));
}

/** The timeline's WAL of [from, to) equals the server's pg_wal bytes. */
export async function assertSameWal(tl: Timeline, pg: Cluster, from: Lsn, to: Lsn): Promise<void> {
  const ours = await tl.readWal(from, to, testContext());
  const theirs = serverWal(pg, from, to);
  const at = firstDifference(ours, theirs);
  assert.equal(
    at,
    -1,
    `timeline WAL ${formatLsn(from)}..${formatLsn(to)} (${ours.length} bytes) differs from ${pg.walDir} (${theirs.length} bytes) at ${formatLsn(from + BigInt(at))}`,
  );
}
