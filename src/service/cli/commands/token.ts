/**
 * `tideline token`: mint a bearer token for the HTTP API.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { type Command, Option } from "commander";
import { mintToken, parseTtl, type TokenScope } from "../../http/auth.js";

interface TokenCliOptions {
  privateKey: string;
  scope: "admin" | "timeline";
  timeline?: string;
  ttl: string;
}

/**
 * Mints a token and prints it; returns the exit code.
 *
 * @example
 * ```ts
 * import { runToken } from "./token.js";
 * process.exitCode = await runToken({ privateKey: "auth_private.pem", scope: "admin", ttl: "1h" });
 * ```
 */
export async function runToken(options: TokenCliOptions): Promise<number> {
  try {
    if (options.scope === "timeline" && options.timeline === undefined)
      throw new RangeError("--scope timeline needs --timeline ID");
    if (options.scope === "admin" && options.timeline !== undefined)
      throw new RangeError("--timeline goes with --scope timeline, not admin");
    const ttl = parseTtl(options.ttl);
    const scope: TokenScope =
      options.scope === "admin"
        ? { scope: "admin" }
        : { scope: "timeline", timeline_id: options.timeline! };
    let pem: string;
    try {
      pem = await readFile(options.privateKey, "utf8");
    } catch (error) {
      throw new Error(
        `cannot read --private-key ${options.privateKey}: ${(error as Error).message}`,
      );
    }
    let jwt: string;
    try {
      jwt = await mintToken(pem, scope, ttl);
    } catch (error) {
      throw new Error(`${options.privateKey}: ${(error as Error).message}`);
    }
    process.stdout.write(`${jwt}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`tideline token: ${(error as Error).message}\n`);
    return 2;
  }
}

/**
 * Registers `tideline token`.
 *
 * @example
 * ```ts
 * import { Command } from "commander";
 * import { registerToken } from "./token.js";
 * registerToken(new Command("tideline"));
 * ```
 */
export function registerToken(program: Command): void {
  program
    .command("token")
    .description("mint a bearer token (EdDSA JWT) for the HTTP API of `tideline server`")
    .requiredOption("--private-key <file>", "the Ed25519 private key (PEM, PKCS#8)")
    .addOption(
      new Option("--scope <scope>", "admin: every endpoint; timeline: one timeline's endpoints")
        .choices(["admin", "timeline"])
        .makeOptionMandatory(),
    )
    .option("--timeline <id>", "the timeline a --scope timeline token reaches")
    .option("--ttl <duration>", "how long the token is valid: 90s, 15m, 1h, 7d", "1h")
    .addHelpText(
      "after",
      `
Make the key pair with
  openssl genpkey -algorithm ed25519 -out auth_private.pem
  openssl pkey -in auth_private.pem -pubout -out auth_public.pem
and start the server with --auth-public-key auth_public.pem.

Example:
  TOKEN=$(tideline token --private-key auth_private.pem --scope timeline --timeline main --ttl 15m)
  curl -H "Authorization: Bearer $TOKEN" localhost:9898/v1/timelines/main`,
    )
    .action(async (options: TokenCliOptions) => {
      process.exitCode = await runToken(options);
    });
}
