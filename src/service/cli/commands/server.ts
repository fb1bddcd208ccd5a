/**
 * `tideline server`: the HTTP API over many timelines.
 *
 * @module
 */
import type { Command } from "commander";
import { runServer, type ServerOptions } from "../../server.js";
import { addLayerStorageOptions, sizeOption } from "./options.js";

/**
 * Registers `tideline server`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { registerServer } from "./server.js";
 * registerServer(new Command("tideline"));
 * ```
 */
export function registerServer(program: Command): void {
  const command = program
    .command("server")
    .description("run many timelines behind an HTTP API (JSON, OpenAPI, Prometheus metrics)")
    .requiredOption(
      "--data-dir <dir>",
      "Tideline's data directory (timelines are reattached at start)",
    )
    .option(
      "--listen <host:port>",
      "where the HTTP API listens (port 0: any free port)",
      "127.0.0.1:9898",
    )
    .option(
      "--local-layer-limit <size>",
      "with --remote: keep at most this much layer data per timeline locally (e.g. 10GiB); older uploaded layers are evicted and downloaded again on read",
      sizeOption,
    )
    .option(
      "--auth-public-key <file>",
      "require Bearer JWTs signed (EdDSA) by the matching Ed25519 private key",
    );
  addLayerStorageOptions(command)
    .addHelpText(
      "after",
      `
Timelines are defined over the API and remembered in the data directory; a restart
reattaches them all. SIGINT/SIGTERM flushes every timeline (a few at a time) and exits 0;
a second signal stops at once. Once listening it prints "listening on http://HOST:PORT".

Endpoints (GET /openapi.json has them all, with their parameters):
  GET  /v1/status                      version, uptime, timelines (no auth)
  GET  /metrics                        Prometheus metrics, tideline_* (no auth)
  GET  /v1/timelines                   POST /v1/timelines {"id","sources":[...],"slot"?,"startLsn"?}
  GET  /v1/timelines/ID                DELETE /v1/timelines/ID
  GET  /v1/timelines/ID/wait_lsn?lsn=0/3000000&timeout_ms=10000
  GET  /v1/timelines/ID/wal?from=&to=  GET /v1/timelines/ID/records?from=&to=&rel=&fork=&blk=
  GET  /v1/timelines/ID/wal_files/NAME (for restore-wal --server)
  POST /v1/timelines/ID/shutdown?mode=hard|freeze-and-flush   POST /v1/timelines/ID/start
  GET  /v1/tasks                       the live task tree

Auth: make a key pair with
  openssl genpkey -algorithm ed25519 -out auth_private.pem
  openssl pkey -in auth_private.pem -pubout -out auth_public.pem
then start with --auth-public-key auth_public.pem and mint tokens with \`tideline token\`.

Example:
  tideline server --data-dir /var/lib/tideline --remote s3://wal-archive/prod
  curl -X POST localhost:9898/v1/timelines -H 'content-type: application/json' \\
    -d '{"id":"main","sources":["postgres://replicator@db1/postgres"],"slot":"tideline"}'`,
    )
    .action(async (options: ServerOptions) => {
      process.exitCode = await runServer(options);
    });
}
