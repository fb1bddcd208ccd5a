/**
 * `tideline restore-wal` from its three sources: a local data dir, remote storage alone,
 * and a `tideline server` over HTTP (a small node:http stub here, serving the same
 * timeline through restoreWalFile, as the server does). Every source writes the source's
 * segments byte for byte (exit 0); a file the timeline does not hold is exit 1 with
 * nothing written, with or without `--on-error abort`; bad usage and every other failure
 * (S3 that went away, no server, a damaged layer, a crash) is exit 2 with nothing written,
 * or 255 with `--on-error abort`, the status that makes PostgreSQL stop recovery.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { FileStorage, RemoteUploader } from "../../src/remote/index.js";
import { restoreWalFile, Timeline } from "../../src/timeline/index.js";
import { HAVE_PG15 } from "../support/postgres.js";
import { S3_CREDENTIALS, startS3Server } from "../support/s3.js";
import { makeWalSource, pieces, prng, testContext, type WalSource } from "../timeline/source.js";

const BIN = resolve("dist/cli/main.js");

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The status of a failure other than "not held" with `--on-error abort`. */
const ABORT = 255;

/** Each `--on-error` mode, with the status of a failure other than "not held" in it. */
const ON_ERROR_MODES = [
  [[], 2],
  [["--on-error", "abort"], ABORT],
] as const;

/**
 * Runs the CLI without blocking this process (the stub server lives here); `nodeArgs` go to
 * node before the script.
 */
function tideline(
  args: string[],
  env: Record<string, string | undefined> = {},
  nodeArgs: string[] = [],
): Promise<Run> {
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TIDELINE_TOKEN: undefined, ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  return new Promise((resolve) =>
    child.on("close", (status) => resolve({ status, stdout, stderr })),
  );
}

/** What the stub server does with the next requests. */
type Mode = "serve" | "500" | "plain404" | "cut" | "hang";

describe("tideline restore-wal from a data dir, remote storage, or a server", {
  skip: !HAVE_PG15 && "PostgreSQL 15 is not installed",
}, () => {
  let src: WalSource;
  let dir: string;
  let dataDir: string;
  let remoteUrl: string;
  let server: Server;
  let serverUrl = "";
  let reader: Timeline;
  let mode: Mode = "serve";
  let requiredToken: string | undefined;
  const seenAuth: (string | undefined)[] = [];
  /** The whole segments the timeline holds. */
  let whole: { name: string; bytes: Buffer }[];

  before(async () => {
    src = await makeWalSource([
      "CREATE TABLE t (id int PRIMARY KEY, v text)",
      "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 9000) g",
      "SELECT pg_switch_wal()",
      "UPDATE t SET v = 'y' WHERE id % 4 = 0",
    ]);
    dir = mkdtempSync(join(tmpdir(), "tideline-restore-wal-test-"));
    dataDir = join(dir, "data");
    const remoteDir = join(dir, "remote");
    remoteUrl = `file://${remoteDir}`;
    const tl = await Timeline.create({
      dataDir,
      id: "main",
      startLsn: src.start,
      segmentSize: src.segmentSize,
      layerSize: 256 << 10,
    });
    RemoteUploader.start(tl, new FileStorage(remoteDir));
    const ctx = testContext();
    for (const p of pieces(src, src.start, src.end, prng(1))) await tl.ingest(p.lsn, p.bytes, ctx);
    const result = await tl.shutdown("freeze-and-flush");
    assert.equal(result.remoteConsistentLsn, result.lastRecordLsn, "everything uploaded");
    const fullEnd = src.start + BigInt(src.bytes.length);
    whole = src.segments.filter((_, i) => src.start + BigInt((i + 1) * src.segmentSize) <= fullEnd);
    assert.ok(whole.length >= 2, `some whole segments: ${whole.length}`);

    // The stub of `tideline server`'s WAL file endpoint.
    reader = await Timeline.open({ dataDir, id: "main", readOnly: true });
    const scratch = join(dir, "scratch");
    mkdirSync(scratch);
    let n = 0;
    server = createServer((req, res) => {
      void (async () => {
        seenAuth.push(req.headers.authorization);
        const json = (status: number, code: string, message: string, what?: string) => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { code, message, ...(what ? { what } : {}) } }));
        };
        if (requiredToken !== undefined && req.headers.authorization !== `Bearer ${requiredToken}`)
          return json(401, "unauthorized", "a valid bearer token is required");
        if (mode === "500") return json(500, "internal", "injected");
        if (mode === "plain404") {
          res.writeHead(404, { "content-type": "text/html" });
          return res.end("<html>no such page</html>");
        }
        if (mode === "hang") return; // never answers; the client's end closes the socket
        const m = /^\/v1\/timelines\/([^/]+)\/wal_files\/([^/]+)$/.exec(req.url ?? "");
        if (m === null) return json(404, "no_route", "no such route");
        if (decodeURIComponent(m[1]!) !== "main")
          return json(404, "not_found", `no timeline ${m[1]}`, "timeline");
        const path = join(scratch, String(n++));
        if (!(await restoreWalFile(reader, decodeURIComponent(m[2]!), path, testContext())))
          return json(404, "not_found", `timeline main does not hold ${m[2]}`, "wal_file");
        const bytes = readFileSync(path);
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": String(bytes.length),
        });
        if (mode === "cut") {
          // Half the body reaches the client, then the connection breaks.
          res.write(bytes.subarray(0, bytes.length >> 1), () =>
            setTimeout(() => res.socket?.destroy(), 100),
          );
          return;
        }
        res.end(bytes);
      })().catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    serverUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });

  after(async () => {
    await reader?.shutdown("hard");
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const sources = () =>
    [
      ["--data-dir", dataDir],
      ["--remote", remoteUrl],
      ["--server", serverUrl],
    ] as const;

  let destN = 0;
  const dest = () => join(dir, `dest-${destN++}`);
  /** Nothing at `path`, nor a temporary file next to it. */
  const nothingAt = (path: string) => {
    assert.equal(existsSync(path), false, `${path} was written`);
    assert.equal(existsSync(`${path}.tmp`), false, `${path}.tmp was left`);
  };

  it("writes every whole segment byte for byte from each source (exit 0)", async () => {
    const tmp = join(dir, "tmp-remote");
    mkdirSync(tmp);
    for (const [flag, value] of sources()) {
      for (const seg of whole) {
        const out = dest();
        const r = await tideline(
          ["restore-wal", "--timeline", "main", flag, value, seg.name, out],
          { TMPDIR: tmp },
        );
        assert.equal(r.status, 0, `${flag} ${seg.name}: ${r.stderr}`);
        assert.ok(readFileSync(out).equals(seg.bytes), `${flag}: ${seg.name} byte for byte`);
        assert.equal(existsSync(`${out}.tmp`), false);
      }
    }
    assert.deepEqual(readdirSync(tmp), [], "--remote removed its temporary dir");
  });

  it("exits 1 writing nothing for a file the timeline does not hold, from each source, with --on-error abort too; no such timeline is a failure", async () => {
    const last = whole[whole.length - 1]!.name;
    const later =
      last.slice(0, 16) +
      (Number.parseInt(last.slice(16), 16) + 40).toString(16).toUpperCase().padStart(8, "0");
    const otherTli = `00000002${whole[0]!.name.slice(8)}`;
    for (const onError of [[], ["--on-error", "abort"]]) {
      for (const [flag, value] of sources()) {
        for (const name of [later, otherTli, "00000002.history", `${whole[0]!.name}.partial`]) {
          const out = dest();
          const r = await tideline([
            "restore-wal",
            ...onError,
            "--timeline",
            "main",
            flag,
            value,
            name,
            out,
          ]);
          assert.equal(r.status, 1, `${onError} ${flag} ${name}: ${r.stderr}`);
          assert.match(r.stderr, /does not hold/);
          nothingAt(out);
        }
        const out = dest();
        const r = await tideline([
          "restore-wal",
          ...onError,
          "--timeline",
          "other",
          flag,
          value,
          whole[0]!.name,
          out,
        ]);
        // A wrong --timeline is a configuration error, not the end of the archive: exit 2, or
        // 255 with --on-error abort (which stops a point-in-time recovery instead of ending it).
        assert.equal(
          r.status,
          onError.length > 0 ? ABORT : 2,
          `${onError} ${flag}, no such timeline: ${r.stderr}`,
        );
        assert.match(r.stderr, /no timeline "?other"?/);
        nothingAt(out);
      }
    }
  });

  it("--server sends the bearer token of TIDELINE_TOKEN or --token-file, never printing it", async () => {
    requiredToken = "s3cret-token";
    try {
      const name = whole[0]!.name;
      const args = (out: string) => [
        "restore-wal",
        "--timeline",
        "main",
        "--server",
        serverUrl,
        name,
        out,
      ];
      let out = dest();
      const refused = await tideline(args(out));
      assert.equal(refused.status, 2, refused.stderr);
      assert.match(refused.stderr, /401.*TIDELINE_TOKEN/);
      nothingAt(out);
      out = dest();
      const wrong = await tideline(args(out), { TIDELINE_TOKEN: "wrong" });
      assert.equal(wrong.status, 2);
      assert.doesNotMatch(wrong.stderr, /wrong|s3cret/);
      nothingAt(out);
      out = dest();
      const viaEnv = await tideline(args(out), { TIDELINE_TOKEN: "s3cret-token" });
      assert.equal(viaEnv.status, 0, viaEnv.stderr);
      assert.ok(readFileSync(out).equals(whole[0]!.bytes));
      assert.equal(seenAuth[seenAuth.length - 1], "Bearer s3cret-token");
      const tokenFile = join(dir, "token");
      writeFileSync(tokenFile, "s3cret-token\n");
      out = dest();
      const viaFile = await tideline([...args(out), "--token-file", tokenFile], {
        TIDELINE_TOKEN: "wrong",
      });
      assert.equal(viaFile.status, 0, viaFile.stderr);
      assert.ok(readFileSync(out).equals(whole[0]!.bytes));
      assert.doesNotMatch(viaEnv.stderr + viaFile.stderr, /s3cret/);
    } finally {
      requiredToken = undefined;
    }
  });

  it("--server: a 500, a 404 that is not the API's, a body cut short, or no server is exit 2, writing nothing", async () => {
    const name = whole[0]!.name;
    const args = (url: string, out: string) => [
      "restore-wal",
      "--timeline",
      "main",
      "--server",
      url,
      name,
      out,
    ];
    for (const [m, pattern] of [
      ["500", /answered 500: injected/],
      ["plain404", /answered 404/],
      ["cut", /broke off|got \d+ of/],
    ] as const) {
      mode = m;
      try {
        const out = dest();
        const r = await tideline(args(serverUrl, out));
        assert.equal(r.status, 2, `${m}: ${r.stderr}`);
        assert.match(r.stderr, pattern);
        nothingAt(out);
      } finally {
        mode = "serve";
      }
    }
    const closed = new URL(serverUrl);
    closed.port = String(Number(closed.port) === 65535 ? 1 : Number(closed.port) + 1);
    const out = dest();
    const r = await tideline(args(closed.toString(), out));
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /failed/);
    nothingAt(out);
  });

  it("--on-error abort: S3 that went away, no server, a server error or a damaged layer is exit 255, writing nothing; without it, exit 2", async () => {
    const name = whole[0]!.name;
    /** Asks `source` for `name` without --on-error, with `missing` and with `abort`. */
    const each = async (source: string[], pattern: RegExp, env: Record<string, string> = {}) => {
      for (const [onError, status] of [
        [[], 2],
        [["--on-error", "missing"], 2],
        [["--on-error", "abort"], ABORT],
      ] as const) {
        const out = dest();
        const r = await tideline(
          ["restore-wal", ...onError, "--timeline", "main", ...source, name, out],
          env,
        );
        assert.equal(r.status, status, `${source.join(" ")} ${onError.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, pattern);
        nothingAt(out);
      }
    };
    const { token } = testContext();

    // S3 (s3rver) holding the timeline serves it; once it is gone, that is a failure.
    const s3 = await startS3Server();
    const env = {
      AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
    };
    const url = s3.url("tl");
    try {
      const files = new FileStorage(join(dir, "remote"));
      const storage = s3.storage("tl");
      try {
        for (const key of await files.list("", token))
          await storage.put(key, (await files.get(key, token))!, token);
      } finally {
        storage.destroy();
      }
      const out = dest();
      const r = await tideline(
        ["restore-wal", "--on-error", "abort", "--timeline", "main", "--remote", url, name, out],
        env,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.ok(readFileSync(out).equals(whole[0]!.bytes), "S3 serves it while it is up");
      // Nothing for PostgreSQL's log when all is well (the AWS SDK's notice on Node.js 20).
      assert.equal(r.stderr, "");
    } finally {
      await s3.close();
    }
    await each(["--remote", url], /cannot restore .*ECONNREFUSED/, env);

    // No server at all, and a server answering 500.
    const closed = new URL(serverUrl);
    closed.port = String(Number(closed.port) === 65535 ? 1 : Number(closed.port) + 1);
    await each(["--server", closed.toString()], /failed/);
    mode = "500";
    try {
      await each(["--server", serverUrl], /answered 500/);
    } finally {
      mode = "serve";
    }

    // A damaged layer: a copy of the remote storage with a byte flipped in every layer file.
    const damaged = join(dir, "remote-damaged");
    cpSync(join(dir, "remote"), damaged, { recursive: true });
    let flipped = 0;
    for (const key of await new FileStorage(damaged).list("timelines/main/layers/", token)) {
      const path = join(damaged, ...key.split("/"));
      const bytes = readFileSync(path);
      bytes[bytes.length >> 1]! ^= 0xff;
      writeFileSync(path, bytes);
      flipped++;
    }
    assert.ok(flipped > 0, "some layer files");
    await each(["--remote", `file://${damaged}`], /is damaged/);
  });

  it('a crash escaping the command is a failure, never "not held": exit 2, or 255 with --on-error abort', async () => {
    // An exception thrown from a timer while the server keeps the request waiting.
    const crash = [
      "--import",
      `data:text/javascript,${encodeURIComponent('setTimeout(() => { throw new Error("injected crash"); }, 300);')}`,
    ];
    mode = "hang";
    try {
      for (const [onError, status] of ON_ERROR_MODES) {
        const out = dest();
        const r = await tideline(
          [
            "restore-wal",
            ...onError,
            "--timeline",
            "main",
            "--server",
            serverUrl,
            whole[0]!.name,
            out,
          ],
          {},
          crash,
        );
        assert.equal(r.status, status, `${onError.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, /injected crash/);
        nothingAt(out);
      }
    } finally {
      mode = "serve";
    }
  });

  it("--timeout: a server that never answers is a failure after that long, writing nothing; bad values are usage errors", async () => {
    mode = "hang";
    try {
      for (const [onError, status] of ON_ERROR_MODES) {
        const out = dest();
        const r = await tideline([
          "restore-wal",
          ...onError,
          "--timeout",
          "0.5",
          "--timeline",
          "main",
          "--server",
          serverUrl,
          whole[0]!.name,
          out,
        ]);
        assert.equal(r.status, status, `${onError.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, /not restored within --timeout 0\.5 s \(nothing written\)/);
        nothingAt(out);
      }
    } finally {
      mode = "serve";
    }
    // From remote storage too: the scratch dir is cleaned up before the answer.
    const before = readdirSync(tmpdir()).filter((f) => f.startsWith("tideline-restore-wal-"));
    const out = dest();
    const r = await tideline([
      "restore-wal",
      "--timeout",
      "0.001",
      "--timeline",
      "main",
      "--remote",
      remoteUrl,
      whole[0]!.name,
      out,
    ]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /not restored within --timeout/);
    nothingAt(out);
    assert.deepEqual(
      readdirSync(tmpdir()).filter((f) => f.startsWith("tideline-restore-wal-")),
      before,
    );
    // A fetch that does not stop when cancelled (here the index read never settles, as a
    // step that ignores its token would) still ends, after as long again, cleaning up.
    const neverSettles = [
      "--import",
      `data:text/javascript,${encodeURIComponent(
        [
          'import { createRequire, syncBuiltinESMExports } from "node:module";',
          'const fs = createRequire("/")("node:fs");',
          "const readFile = fs.promises.readFile;",
          'fs.promises.readFile = (p, ...a) => String(p).endsWith("index.json") ? new Promise(() => {}) : readFile(p, ...a);',
          "syncBuiltinESMExports();",
        ].join("\n"),
      )}`,
    ];
    {
      const out = dest();
      const r = await tideline(
        [
          "restore-wal",
          "--on-error",
          "abort",
          "--timeout",
          "0.5",
          "--timeline",
          "main",
          "--data-dir",
          dataDir,
          whole[0]!.name,
          out,
        ],
        {},
        neverSettles,
      );
      assert.equal(r.status, ABORT, r.stderr);
      assert.match(r.stderr, /did not stop within 0\.5 s more: giving up/);
      nothingAt(out);
    }
    // A bad value before --on-error abort: still 255 (commander stops at the bad value).
    const late = await tideline([
      "restore-wal",
      "--timeout",
      "soon",
      "--on-error",
      "abort",
      "--timeline",
      "main",
      "--remote",
      remoteUrl,
      whole[0]!.name,
      dest(),
    ]);
    assert.equal(late.status, ABORT, late.stderr);
    for (const bad of ["-1", "soon", "", "2147484"]) {
      const b = await tideline([
        "restore-wal",
        "--timeout",
        bad,
        "--timeline",
        "main",
        "--remote",
        remoteUrl,
        whole[0]!.name,
        dest(),
      ]);
      assert.equal(b.status, 2, `${bad}: ${b.stderr}`);
      assert.match(
        b.stderr,
        new RegExp(`expected a number of seconds from 0 to 2147483, got "${bad}"`),
      );
    }
  });

  it("bad usage is exit 2, or 255 with --on-error abort: no source, two sources, --token-file without --server, a bad name", async () => {
    const name = whole[0]!.name;
    for (const [args, pattern] of [
      [["restore-wal", "--timeline", "main", name, dest()], /give one of --data-dir/],
      [
        [
          "restore-wal",
          "--timeline",
          "main",
          "--data-dir",
          dataDir,
          "--server",
          serverUrl,
          name,
          dest(),
        ],
        /only one of/,
      ],
      [
        [
          "restore-wal",
          "--timeline",
          "main",
          "--remote",
          remoteUrl,
          "--token-file",
          "/x",
          name,
          dest(),
        ],
        /--token-file goes with --server/,
      ],
      [
        ["restore-wal", "--timeline", "main", "--data-dir", dataDir, "not-a-wal-file", dest()],
        /is not a WAL segment or history file name/,
      ],
      [["restore-wal", "--data-dir", dataDir, name, dest()], /required option '--timeline/],
      [
        ["restore-wal", "--timeline", "main", "--remote", "ftp://x/y", name, dest()],
        /Unsupported remote storage URL/,
      ],
    ] as const) {
      for (const [onError, status] of ON_ERROR_MODES) {
        const r = await tideline([args[0], ...onError, ...args.slice(1)]);
        assert.equal(r.status, status, `${args.join(" ")} ${onError.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, pattern);
      }
    }
    // Commander parses nothing after an unknown option: an --on-error there still counts.
    for (const onError of [["--on-error", "abort"], ["--on-error=abort"]]) {
      const r = await tideline([
        "restore-wal",
        "--timeline",
        "main",
        "--data_dir",
        dataDir,
        ...onError,
        name,
        dest(),
      ]);
      assert.equal(r.status, ABORT, `${onError.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /unknown option '--data_dir'/);
    }
    // A bad --on-error value is exit 2, with one line naming it.
    const bad = await tideline([
      "restore-wal",
      "--on-error",
      "abrot",
      "--timeline",
      "main",
      "--data-dir",
      dataDir,
      name,
      dest(),
    ]);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(
      bad.stderr.split("\n")[0]!,
      /'--on-error <action>' argument 'abrot' is invalid\. Allowed choices are missing, abort/,
    );
    const help = await tideline(["restore-wal", "--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--remote <url>/);
    assert.match(help.stdout, /--server <url>/);
    assert.match(help.stdout, /--token-file <file>/);
    assert.match(help.stdout, /--on-error <action>/);
    assert.match(help.stdout, /255 +instead of 2 with --on-error abort/);
  });
});
