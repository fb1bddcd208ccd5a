import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

const bin = "dist/cli/main.js";

function run(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });
}

describe("tideline CLI", () => {
  it("prints help that names the program and exits 0", () => {
    const r = run("--help");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: tideline/);
  });

  it("prints the package version", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    const r = run("--version");
    assert.equal(r.status, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  it("stops quietly when the reader of its output goes away (help | head -1)", async () => {
    for (const args of [["waldump", "--help"], ["ingest", "--help"], ["--help"]]) {
      const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      // Closed before the child writes: every write fails with EPIPE.
      child.stdout.destroy();
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      assert.equal(stderr, "", `${args.join(" ")}: nothing on stderr`);
      assert.equal(code, 0, args.join(" "));
    }
  });

  it("rejects an unknown command with a non-zero exit and names it", () => {
    const r = run("no-such-command");
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /no-such-command/);
  });
});
