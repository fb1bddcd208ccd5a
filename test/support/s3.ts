/**
 * S3 for tests: a real S3 API server (s3rver) in this process, and a TCP proxy in front
 * of it that injects faults (connection resets, 5xx answers, stalls, requests and
 * responses cut short) or slows uploads down.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Storage, type S3StorageOptions } from "../../src/remote/s3_storage.js";

interface S3rverLike {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverLike;
const require = createRequire(import.meta.url);
const S3rver = require("s3rver") as S3rverCtor;

// s3rver encrypts ListObjectsV2 continuation tokens with single DES, which OpenSSL 3
// (Node >= 17) refuses, so every truncated listing fails with a 500. Three-key DES with
// the key repeated is single DES, and still available: give s3rver that instead.
{
  const crypto = require("node:crypto") as typeof import("node:crypto");
  const triple = (key: Buffer) => Buffer.concat([key, key, key]);
  const { createCipheriv, createDecipheriv } = crypto;
  Object.assign(crypto, {
    createCipheriv: (alg: string, key: Buffer, iv: Buffer, ...rest: []) =>
      alg === "des"
        ? createCipheriv("des-ede3-cbc", triple(key), iv)
        : createCipheriv(alg, key, iv, ...rest),
    createDecipheriv: (alg: string, key: Buffer, iv: Buffer, ...rest: []) =>
      alg === "des"
        ? createDecipheriv("des-ede3-cbc", triple(key), iv)
        : createDecipheriv(alg, key, iv, ...rest),
  });
}

/** The bucket every test server has. */
export const BUCKET = "tideline";
/** The credentials s3rver accepts. */
export const S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

/** A running s3rver. */
export interface S3Server {
  readonly endpoint: string;
  readonly port: number;
  /** Where it keeps the objects. */
  readonly dir: string;
  /** An S3Storage on {@linkcode BUCKET} under `prefix`, with s3rver's credentials. */
  storage(prefix: string, options?: Partial<S3StorageOptions>): S3Storage;
  /** The `s3://` URL of `prefix`, as `--remote` takes it (credentials come from the environment). */
  url(prefix: string): string;
  close(): Promise<void>;
}

/** Starts s3rver on a free port of 127.0.0.1 with the bucket {@linkcode BUCKET}. */
export async function startS3Server(): Promise<S3Server> {
  const dir = mkdtempSync(join(tmpdir(), "tideline-s3rver-"));
  const server = new S3rver({
    port: 0,
    address: "127.0.0.1",
    silent: true,
    directory: dir,
    configureBuckets: [{ name: BUCKET }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    port,
    dir,
    storage: (prefix, options = {}) =>
      new S3Storage({
        bucket: BUCKET,
        prefix,
        endpoint,
        forcePathStyle: true,
        region: "us-east-1",
        credentials: S3_CREDENTIALS,
        ...options,
      }),
    url: (prefix) =>
      `s3://${BUCKET}/${prefix}?endpoint=${endpoint}&forcePathStyle=true&region=us-east-1`,
    close: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * What the proxy does with one connection (the storage under test opens one per request
 * when keep-alive is off): pass it through, reset it, answer an HTTP error, stall, or cut
 * the request (upload) or the response (download) after so many bytes and reset. With
 * `match`, a fault waits for a request whose request line (`PUT /bucket/key HTTP/1.1`)
 * matches; without, it takes the next one.
 */
export type Fault = { match?: RegExp } & (
  | { kind: "pass" }
  | { kind: "reset" }
  | { kind: "status"; status: number; code: string }
  | { kind: "stall" }
  | { kind: "cutRequest"; after: number }
  | { kind: "cutResponse"; after: number }
  | { kind: "stallResponse"; after: number }
);

/** A TCP proxy to a local server that injects {@linkcode Fault}s, one per connection. */
export class FaultProxy {
  /** Faults still to inject, in order. */
  readonly faults: Fault[] = [];
  /** The request line of each connection's first request. */
  readonly requests: string[] = [];
  /** Faults injected so far. */
  readonly injected: Fault[] = [];
  connections = 0;
  /** When > 0, client-to-server bytes are forwarded at most this many per 20 ms. */
  throttleBytesPerTick = 0;
  #server: Server;
  #sockets = new Set<Socket>();
  #upstreamPort: number;

  constructor(upstreamPort: number) {
    this.#upstreamPort = upstreamPort;
    this.#server = createServer((client) => this.#handle(client));
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return (this.#server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #track(socket: Socket): Socket {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    return socket;
  }

  #handle(client: Socket): void {
    this.connections++;
    this.#track(client);
    client.once("data", (first: Buffer) => {
      const line = first.toString("latin1", 0, Math.min(first.length, 4096)).split("\r\n")[0]!;
      this.requests.push(line);
      const i = this.faults.findIndex((f) => f.match === undefined || f.match.test(line));
      const fault: Fault = i < 0 ? { kind: "pass" } : this.faults.splice(i, 1)[0]!;
      if (fault.kind !== "pass") this.injected.push(fault);
      this.#apply(client, fault, first);
    });
  }

  #apply(client: Socket, fault: Fault, first: Buffer): void {
    switch (fault.kind) {
      case "reset":
        client.resetAndDestroy();
        return;
      case "stall":
        client.resume();
        return;
      case "status": {
        let head = "";
        const onData = (chunk: Buffer) => {
          if (head === null) return;
          head += chunk.toString("latin1");
          if (!head.includes("\r\n\r\n")) return;
          head = null as unknown as string;
          const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected</Message></Error>`;
          client.end(
            `HTTP/1.1 ${fault.status} Injected\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
          );
        };
        onData(first);
        client.on("data", onData);
        return;
      }
      default:
        break;
    }
    const upstream = this.#track(connect(this.#upstreamPort, "127.0.0.1"));
    const kill = () => {
      client.resetAndDestroy();
      upstream.destroy();
    };
    // Client to server: cut short, throttled, or passed through.
    const queue: Buffer[] = [];
    let timer: ReturnType<typeof setInterval> | undefined;
    const drain = () => {
      let budget =
        this.throttleBytesPerTick > 0 ? this.throttleBytesPerTick : Number.POSITIVE_INFINITY;
      while (queue.length > 0 && budget > 0) {
        const b = queue.shift()!;
        const n = Math.min(b.length, budget);
        upstream.write(b.subarray(0, n));
        if (n < b.length) queue.unshift(b.subarray(n));
        budget -= n;
      }
      if (queue.length === 0) {
        clearInterval(timer);
        timer = undefined;
        client.resume();
      }
    };
    let sent = 0;
    const onData = (chunk: Buffer) => {
      if (fault.kind === "cutRequest") {
        const room = fault.after - sent;
        if (room <= 0) return;
        sent += chunk.length;
        upstream.write(chunk.subarray(0, room));
        if (sent >= fault.after) setTimeout(kill, 50);
      } else if (this.throttleBytesPerTick > 0 || queue.length > 0) {
        queue.push(chunk);
        client.pause();
        timer ??= setInterval(drain, 20);
      } else upstream.write(chunk);
    };
    onData(first);
    client.on("data", onData);
    let received = 0;
    upstream.on("data", (chunk: Buffer) => {
      if (fault.kind === "cutResponse" || fault.kind === "stallResponse") {
        const room = fault.after - received;
        if (room <= 0) return;
        received += chunk.length;
        client.write(chunk.subarray(0, room));
        if (received >= fault.after && fault.kind === "cutResponse") kill();
      } else client.write(chunk);
    });
    client.on("end", () => upstream.end());
    client.on("close", () => {
      clearInterval(timer);
      upstream.destroy();
    });
    if (fault.kind === "stallResponse") return; // the server's end never reaches the client
    upstream.on("end", () => client.end());
    upstream.on("close", () => client.destroy());
  }
}
