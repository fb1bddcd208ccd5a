/**
 * The RemoteStorage contract, run against the local-directory backend and against
 * S3Storage on a real S3 API server (s3rver) started here; plus S3 failures: a bad
 * bucket, bad credentials, and faults injected by a small TCP proxy in front of s3rver
 * (connection resets, 500/503 answers, stalls, requests and responses cut short).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancellationToken, CancelledError } from "../../src/lifecycle/index.js";
import { FileStorage } from "../../src/remote/file_storage.js";
import { openRemoteStorage } from "../../src/remote/open.js";
import { S3Storage, type S3StorageOptions } from "../../src/remote/s3_storage.js";
import { type RemoteStorage, RemoteStorageError } from "../../src/remote/storage.js";
import { freePort } from "../support/postgres.js";
import { BUCKET, FaultProxy, S3_CREDENTIALS, type S3Server, startS3Server } from "../support/s3.js";

const token = () => new CancellationToken();
const cancelled = () => {
  const t = new CancellationToken();
  t.cancel("test");
  return t;
};

/** Asserts that `promise` rejects with a RemoteStorageError whose `transient` is `transient`. */
async function rejectsStorage(promise: Promise<unknown>, transient: boolean): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RemoteStorageError, `not a RemoteStorageError: ${String(error)}`);
    assert.equal(error.transient, transient, `transient should be ${transient}: ${error.message}`);
    return true;
  });
}

/** The same tests for every backend. `make(name)` gives an empty storage. */
function contract(backend: string, make: (name: string) => RemoteStorage, paginated: boolean) {
  describe(`RemoteStorage contract: ${backend}`, () => {
    it("puts and gets byte-exact: small, empty and a few MiB", async () => {
      const s = make("bytes");
      const small = Buffer.from("hello, remote");
      const big = randomBytes(3 * 1024 * 1024 + 17);
      await s.put("a/small", small, token());
      await s.put("a/empty", Buffer.alloc(0), token());
      await s.put("a/big.layer", big, token());
      assert.deepEqual(await s.get("a/small", token()), small);
      const empty = await s.get("a/empty", token());
      assert.ok(empty !== undefined);
      assert.equal(empty.length, 0);
      const got = await s.get("a/big.layer", token());
      assert.ok(got?.equals(big), "the big object came back different");
    });

    it("overwrites", async () => {
      const s = make("overwrite");
      await s.put("index.json", Buffer.from("first, and longer"), token());
      await s.put("index.json", Buffer.from("second"), token());
      assert.deepEqual(await s.get("index.json", token()), Buffer.from("second"));
    });

    it("gets undefined for a missing key", async () => {
      const s = make("missing");
      assert.equal(await s.get("no/such/key", token()), undefined);
      await s.put("no/such/other", Buffer.from("x"), token());
      assert.equal(await s.get("no/such/key", token()), undefined);
      assert.equal(await s.get("no/such", token()), undefined);
    });

    it("lists by prefix, sorted", async () => {
      const s = make("list");
      const keys = ["b", "a/c", "ab", "a/b/2", "a/b/1", "a/b/10"];
      for (const k of keys) await s.put(k, Buffer.from(k), token());
      assert.deepEqual(await s.list("", token()), [...keys].sort());
      assert.deepEqual(await s.list("a/", token()), ["a/b/1", "a/b/10", "a/b/2", "a/c"]);
      assert.deepEqual(await s.list("a", token()), ["a/b/1", "a/b/10", "a/b/2", "a/c", "ab"]);
      assert.deepEqual(await s.list("a/b/1", token()), ["a/b/1", "a/b/10"]);
      assert.deepEqual(await s.list("zzz", token()), []);
    });

    it(`lists many keys${paginated ? " over several pages" : ""}`, async () => {
      const s = make("many");
      const keys = Array.from({ length: 40 }, (_, i) => `layers/${String(i).padStart(4, "0")}`);
      await Promise.all(keys.map((k) => s.put(k, Buffer.from(k), token())));
      await s.put("other", Buffer.from("x"), token());
      assert.deepEqual(await s.list("layers/", token()), keys);
    });

    it("deletes, and deleting a missing key is fine", async () => {
      const s = make("delete");
      await s.put("x/1", Buffer.from("1"), token());
      await s.put("x/2", Buffer.from("2"), token());
      await s.delete("x/1", token());
      assert.equal(await s.get("x/1", token()), undefined);
      assert.deepEqual(await s.list("x/", token()), ["x/2"]);
      await s.delete("x/1", token());
      await s.delete("never/was", token());
    });

    it("rejects bad keys with RangeError", async () => {
      const s = make("badkeys");
      for (const key of ["", "/abs", "a//b", "../up", "a/./b", "a/", "a/.."]) {
        await assert.rejects(s.put(key, Buffer.from("x"), token()), RangeError, key);
        await assert.rejects(s.get(key, token()), RangeError, key);
        await assert.rejects(s.delete(key, token()), RangeError, key);
      }
    });

    it("rejects with CancelledError when the token is cancelled", async () => {
      const s = make("cancel");
      await s.put("k", Buffer.from("old"), token());
      await assert.rejects(s.put("k", Buffer.from("new"), cancelled()), CancelledError);
      await assert.rejects(s.get("k", cancelled()), CancelledError);
      await assert.rejects(s.list("", cancelled()), CancelledError);
      await assert.rejects(s.delete("k", cancelled()), CancelledError);
      assert.deepEqual(await s.get("k", token()), Buffer.from("old"));
    });
  });
}

// ---- the local directory ----------------------------------------------------------

const fileRoot = mkdtempSync(join(tmpdir(), "tideline-remote-file-"));
after(() => rmSync(fileRoot, { recursive: true, force: true }));
contract("FileStorage", (name) => new FileStorage(join(fileRoot, name)), false);

// ---- S3 on s3rver ------------------------------------------------------------------

let server: S3Server;
let endpoint = "";
const clients: S3Storage[] = [];

function s3(options: Partial<S3StorageOptions> = {}): S3Storage {
  const storage = new S3Storage({
    bucket: BUCKET,
    endpoint,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: S3_CREDENTIALS,
    ...options,
  });
  clients.push(storage);
  return storage;
}

before(async () => {
  server = await startS3Server();
  endpoint = server.endpoint;
});

after(async () => {
  for (const c of clients) c.destroy();
  await server.close();
});

contract("S3Storage", (name) => s3({ prefix: `contract/${name}`, listPageSize: 7 }), true);

describe("S3Storage", () => {
  it("keeps keys under its prefix, with no double slashes", async () => {
    const root = s3();
    const a = s3({ prefix: "/tenants//a/" });
    const b = s3({ prefix: "tenants/b" });
    assert.equal(a.prefix, "tenants/a");
    await a.put("index.json", Buffer.from("a"), token());
    await b.put("index.json", Buffer.from("b"), token());
    assert.deepEqual(await root.list("tenants/", token()), [
      "tenants/a/index.json",
      "tenants/b/index.json",
    ]);
    assert.deepEqual(await a.list("", token()), ["index.json"]);
    assert.deepEqual(await root.get("tenants/b/index.json", token()), Buffer.from("b"));
  });

  it("opens from an s3:// URL with credentials from the environment", async () => {
    const names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] as const;
    const saved = names.map((n) => process.env[n]);
    process.env.AWS_ACCESS_KEY_ID = "S3RVER";
    process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
    try {
      const url = `s3://${BUCKET}/via-url/x?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true&region=us-east-1`;
      const storage = await openRemoteStorage(url);
      assert.ok(storage instanceof S3Storage);
      clients.push(storage);
      assert.equal(storage.display, `s3://${BUCKET}/via-url/x at ${endpoint}`);
      await storage.put("k", Buffer.from("v"), token());
      assert.deepEqual(await s3().get("via-url/x/k", token()), Buffer.from("v"));
      // Without a region parameter: the environment's, else us-east-1.
      delete process.env.AWS_REGION;
      const noRegion = await openRemoteStorage(
        `s3://${BUCKET}?endpoint=${endpoint}&forcePathStyle=true`,
      );
      assert.ok(noRegion instanceof S3Storage);
      clients.push(noRegion);
      assert.equal(noRegion.prefix, "");
      assert.deepEqual(await noRegion.get("via-url/x/k", token()), Buffer.from("v"));
    } finally {
      names.forEach((n, i) => {
        const v = saved[i];
        if (v === undefined) delete process.env[n];
        else process.env[n] = v;
      });
    }
  });

  it("refuses credentials and unknown parameters in the URL, without echoing secrets", async () => {
    await assert.rejects(openRemoteStorage("s3://AKIA:hunter2@bucket/p"), (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.ok(!e.message.includes("hunter2"), e.message);
      return true;
    });
    await assert.rejects(openRemoteStorage("s3://bucket/p?endpont=http://x"), TypeError);
    await assert.rejects(openRemoteStorage("s3://bucket/p?endpoint=ftp://x"), TypeError);
    await assert.rejects(openRemoteStorage("s3://bucket/p?forcePathStyle=maybe"), TypeError);
    const s = s3({ endpoint: "http://user:secret@127.0.0.1:1", prefix: "p" });
    assert.ok(!s.display.includes("secret"), s.display);
  });

  it("fails for good on a bucket that does not exist", async () => {
    const s = s3({ bucket: "no-such-bucket" });
    await rejectsStorage(s.put("k", Buffer.from("v"), token()), false);
    await rejectsStorage(s.get("k", token()), false);
    await rejectsStorage(s.list("", token()), false);
  });

  it("fails for good with unknown credentials", async () => {
    const s = s3({ credentials: { accessKeyId: "NOBODY", secretAccessKey: "wrong" } });
    await rejectsStorage(s.put("k", Buffer.from("v"), token()), false);
    await rejectsStorage(s.get("k", token()), false);
  });

  it("fails transiently when nothing listens", async () => {
    const port = await freePort();
    const s = s3({ endpoint: `http://127.0.0.1:${port}` });
    await rejectsStorage(s.put("k", Buffer.from("v"), token()), true);
    await rejectsStorage(s.list("", token()), true);
  });
});

// ---- fault injection ---------------------------------------------------------------

describe("S3Storage under injected faults", () => {
  let proxy: FaultProxy;
  let faulty: S3Storage;
  let direct: S3Storage;

  before(async () => {
    proxy = new FaultProxy(Number(new URL(endpoint).port));
    const port = await proxy.start();
    const prefix = "faults";
    faulty = s3({
      prefix,
      endpoint: `http://127.0.0.1:${port}`,
      keepAlive: false,
      idleTimeoutMs: 400,
    });
    direct = s3({ prefix });
  });
  after(() => proxy.close());

  it("passes through when nothing is injected", async () => {
    await faulty.put("ok", Buffer.from("fine"), token());
    assert.deepEqual(await faulty.get("ok", token()), Buffer.from("fine"));
  });

  it("makes connection resets transient", async () => {
    for (const op of [
      () => faulty.put("reset", Buffer.from("v"), token()),
      () => faulty.get("ok", token()),
      () => faulty.list("", token()),
      () => faulty.delete("ok", token()),
    ]) {
      proxy.faults.push({ kind: "reset" });
      await rejectsStorage(op(), true);
    }
    assert.equal(await direct.get("reset", token()), undefined);
    assert.deepEqual(await direct.get("ok", token()), Buffer.from("fine"));
  });

  it("makes 500, 503 SlowDown and 429 transient, and succeeds once they stop", async () => {
    proxy.faults.push(
      { kind: "status", status: 500, code: "InternalError" },
      { kind: "status", status: 503, code: "SlowDown" },
      { kind: "status", status: 429, code: "TooManyRequests" },
    );
    for (let i = 0; i < 3; i++) {
      await rejectsStorage(faulty.put("retried", Buffer.from("v"), token()), true);
    }
    proxy.faults.push({ kind: "status", status: 500, code: "InternalError" });
    await rejectsStorage(faulty.get("ok", token()), true);
    await faulty.put("retried", Buffer.from("v"), token());
    assert.deepEqual(await direct.get("retried", token()), Buffer.from("v"));
  });

  it("makes a stalled server a transient timeout", async () => {
    proxy.faults.push({ kind: "stall" });
    const started = Date.now();
    await rejectsStorage(faulty.get("ok", token()), true);
    assert.ok(Date.now() - started < 5000);
  });

  it("stops a stalled request at once when the token is cancelled", async () => {
    const slow = s3({
      prefix: "faults",
      endpoint: faulty.display.replace(/^.* at /, ""),
      keepAlive: false,
    });
    proxy.faults.push({ kind: "stall" });
    const t = token();
    const started = Date.now();
    setTimeout(() => t.cancel("shutdown"), 100);
    await assert.rejects(slow.get("ok", t), CancelledError);
    assert.ok(Date.now() - started < 2000);
  });

  it("never returns a half-written object when an upload is cut", async () => {
    // S3 itself keeps the old object; s3rver writes in place over it, keeping the old
    // metadata, so S3Storage's SHA-256 check must refuse the cut object, never return it.
    const readsAfterCut = async (key: string, old: Buffer | undefined): Promise<string> => {
      try {
        const got = await direct.get(key, token());
        if (got === undefined) {
          assert.equal(old, undefined, "the old object vanished");
          return "undefined";
        }
        assert.ok(old !== undefined && got.equals(old), `a ${got.length}-byte partial object`);
        return "old";
      } catch (error) {
        assert.ok(error instanceof RemoteStorageError, String(error));
        assert.match(error.message, /does not match the SHA-256/);
        assert.equal(error.transient, false);
        return "refused";
      }
    };
    const old = randomBytes(64 * 1024);
    await direct.put("layer", old, token());
    const next = randomBytes(2 * 1024 * 1024);
    proxy.faults.push({ kind: "cutRequest", after: 256 * 1024 });
    await rejectsStorage(faulty.put("layer", next, token()), true);
    await readsAfterCut("layer", old);
    // A cut upload of a new key: S3 stores nothing. s3rver keeps the part without its
    // metadata, which no client can tell from an object written by another tool, so only
    // the failure itself is checked here.
    proxy.faults.push({ kind: "cutRequest", after: 100 * 1024 });
    await rejectsStorage(faulty.put("fresh", next, token()), true);
    // The uploader's retry then puts the whole object.
    await faulty.put("layer", next, token());
    await faulty.put("fresh", next, token());
    assert.ok((await direct.get("layer", token()))?.equals(next));
    assert.ok((await direct.get("fresh", token()))?.equals(next));
  });

  it("times out, or stops when cancelled, in the middle of a download", async () => {
    const data = randomBytes(1024 * 1024);
    await direct.put("slow", data, token());
    proxy.faults.push({ kind: "stallResponse", after: 64 * 1024 });
    await rejectsStorage(faulty.get("slow", token()), true);
    const patient = s3({
      prefix: "faults",
      endpoint: faulty.display.replace(/^.* at /, ""),
      keepAlive: false,
    });
    proxy.faults.push({ kind: "stallResponse", after: 64 * 1024 });
    const t = token();
    const started = Date.now();
    setTimeout(() => t.cancel("shutdown"), 200);
    await assert.rejects(patient.get("slow", t), CancelledError);
    assert.ok(Date.now() - started < 2000);
  });

  it("never returns a truncated object when a download is cut", async () => {
    const data = randomBytes(1024 * 1024);
    await direct.put("download", data, token());
    proxy.faults.push({ kind: "cutResponse", after: 200 * 1024 });
    await rejectsStorage(faulty.get("download", token()), true);
    assert.ok((await faulty.get("download", token()))?.equals(data));
  });
});
