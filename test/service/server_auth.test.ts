/**
 * Auth of the HTTP API: EdDSA JWTs minted by `tideline token`, checked by the server with
 * `--auth-public-key`: valid, missing, malformed, foreign-signed, expired, of another
 * algorithm, and outside their scope.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { importPKCS8, SignJWT } from "jose";
import { loadPublicKey } from "../../src/service/http/auth.js";
import { type Api, fabricateTimeline, startApi } from "./api_harness.js";

const BIN = resolve("dist/cli/main.js");

function keyPair(dir: string, name: string) {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = join(dir, `${name}_public.pem`);
  const priv = join(dir, `${name}_private.pem`);
  writeFileSync(pub, publicKey.export({ type: "spki", format: "pem" }));
  writeFileSync(priv, privateKey.export({ type: "pkcs8", format: "pem" }));
  return { pub, priv };
}

function token(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, "token", ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout.trim(), stderr: r.stderr };
}

describe("HTTP API auth", () => {
  let dir: string;
  let api: Api;
  let keys: { pub: string; priv: string };
  let foreign: { pub: string; priv: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "tideline-auth-"));
    keys = keyPair(dir, "ours");
    foreign = keyPair(dir, "theirs");
    await fabricateTimeline(join(dir, "data"), "main");
    api = await startApi(join(dir, "data"), { authKey: await loadPublicKey(keys.pub) });
  });

  after(async () => {
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("tideline token refuses bad input with a clear message and exit 2", () => {
    const cases: [string[], RegExp][] = [
      [["--private-key", keys.priv, "--scope", "timeline"], /--timeline/],
      [["--private-key", keys.priv, "--scope", "admin", "--timeline", "main"], /--timeline/],
      [["--private-key", keys.priv, "--scope", "admin", "--ttl", "soon"], /soon/],
      [["--private-key", keys.priv, "--scope", "admin", "--ttl", "0s"], /0s/],
      [["--private-key", keys.priv, "--scope", "timeline", "--timeline", "no way"], /no way/],
      [["--private-key", join(dir, "missing.pem"), "--scope", "admin"], /missing\.pem/],
      [["--private-key", keys.pub, "--scope", "admin"], /private key/],
    ];
    for (const [args, pattern] of cases) {
      const r = token(args);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.equal(r.stdout, "");
    }
    const bad = token(["--private-key", keys.priv, "--scope", "root"]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /root/);
  });

  it("/v1/status and /metrics need no token; everything else does (401)", async () => {
    assert.equal((await api.fetch("/v1/status")).status, 200);
    assert.equal((await api.fetch("/metrics")).status, 200);
    for (const path of ["/v1/timelines", "/v1/tasks", "/v1/timelines/main", "/openapi.json"]) {
      const res = await api.fetch(path);
      assert.equal(res.status, 401, path);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "unauthorized");
      assert.match(body.error.message, /Authorization/);
    }
  });

  it("an admin token reaches every endpoint", async () => {
    const r = token(["--private-key", keys.priv, "--scope", "admin", "--ttl", "5m"]);
    assert.equal(r.status, 0, r.stderr);
    for (const path of ["/v1/timelines", "/v1/tasks", "/openapi.json"])
      assert.equal((await api.fetch(path, { token: r.stdout })).status, 200, path);
    assert.equal((await api.fetch("/v1/timelines/main", { token: r.stdout })).status, 200);
    // Past auth, an unknown timeline is the API's own 404.
    assert.equal((await api.fetch("/v1/timelines/nope", { token: r.stdout })).status, 404);
    // The scheme is case-insensitive (RFC 7235).
    const lower = await api.fetch("/v1/tasks", {
      headers: { authorization: `bearer ${r.stdout}` },
    });
    assert.equal(lower.status, 200);
  });

  it("a timeline token reaches only its timeline (403 elsewhere)", async () => {
    const r = token(["--private-key", keys.priv, "--scope", "timeline", "--timeline", "main"]);
    assert.equal(r.status, 0, r.stderr);
    const t = r.stdout;
    assert.equal((await api.fetch("/v1/timelines/main", { token: t })).status, 200);
    assert.equal(
      (await api.fetch("/v1/timelines/main/wait_lsn?lsn=0/0", { token: t })).status,
      200,
    );
    assert.equal((await api.fetch("/v1/timelines/ma%69n", { token: t })).status, 200);
    const other = token(["--private-key", keys.priv, "--scope", "timeline", "--timeline", "other"]);
    assert.equal((await api.fetch("/v1/timelines/ma%69n", { token: other.stdout })).status, 403);
    assert.equal((await api.fetch("/openapi.json", { token: t })).status, 200);
    for (const [path, method] of [
      ["/v1/timelines/other", "GET"],
      ["/v1/timelines/other/wal", "GET"],
      ["/v1/timelines/other", "DELETE"],
      ["/v1/timelines", "GET"],
      ["/v1/timelines", "POST"],
      ["/v1/tasks", "GET"],
    ] as const) {
      const res = await api.fetch(path, { token: t, method });
      assert.equal(res.status, 403, `${method} ${path}`);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "forbidden");
      assert.match(body.error.message, /main/);
    }
  });

  it("missing, malformed, foreign-signed, expired, HS256 and scope-less tokens get 401", async () => {
    const foreignToken = token(["--private-key", foreign.priv, "--scope", "admin"]).stdout;
    const key = await importPKCS8(
      (await import("node:fs")).readFileSync(keys.priv, "utf8"),
      "EdDSA",
    );
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ scope: "admin" })
      .setProtectedHeader({ alg: "EdDSA" })
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(key);
    const noExpiry = await new SignJWT({ scope: "admin" })
      .setProtectedHeader({ alg: "EdDSA" })
      .sign(key);
    const noScope = await new SignJWT({ role: "admin" })
      .setProtectedHeader({ alg: "EdDSA" })
      .setExpirationTime(now + 600)
      .sign(key);
    const hs256 = await new SignJWT({ scope: "admin" })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode("a shared secret of at least 32 bytes!!"));
    const good = token(["--private-key", keys.priv, "--scope", "admin"]).stdout;
    const tampered = `${good.slice(0, -4)}${good.endsWith("AAAA") ? "BBBB" : "AAAA"}`;
    const cases: [Record<string, string>, RegExp][] = [
      [{}, /Missing/],
      [{ authorization: "Basic dXNlcjpwYXNz" }, /Malformed/],
      [{ authorization: "Bearer" }, /Malformed/],
      [{ authorization: "Bearer not.a.jwt" }, /invalid/],
      [{ authorization: `Bearer ${foreignToken}` }, /not signed by this server/],
      [{ authorization: `Bearer ${tampered}` }, /not signed by this server|invalid/],
      [{ authorization: `Bearer ${expired}` }, /expired/],
      [{ authorization: `Bearer ${hs256}` }, /invalid/],
      [{ authorization: `Bearer ${noScope}` }, /scope/],
      [{ authorization: `Bearer ${noExpiry}` }, /no expiry/],
    ];
    for (const [headers, pattern] of cases) {
      const res = await api.fetch("/v1/timelines", { headers });
      assert.equal(res.status, 401, JSON.stringify(headers));
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "unauthorized");
      assert.match(body.error.message, pattern, JSON.stringify(headers));
    }
  });

  it("the server refuses to start with a key file that is not an Ed25519 public key", async () => {
    const junk = join(dir, "junk.pem");
    writeFileSync(junk, "hello");
    await assert.rejects(loadPublicKey(junk), /junk\.pem.*not an Ed25519 public key/);
    const r = spawnSync(
      process.execPath,
      [
        BIN,
        "server",
        "--data-dir",
        join(dir, "d2"),
        "--listen",
        "127.0.0.1:0",
        "--auth-public-key",
        junk,
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /junk\.pem/);
  });
});
