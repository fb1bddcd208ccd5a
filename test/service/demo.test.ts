import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";

describe("tideline demo", () => {
  it("streams, verifies every exported segment byte for byte, and leaves nothing behind", () => {
    const r = spawnSync(process.execPath, ["dist/cli/main.js", "demo", "--rows", "30000"], {
      encoding: "utf8",
      timeout: 180_000,
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const m = /(\d+) of (\d+) segment files identical/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.equal(m[1], m[2]);
    assert.ok(Number(m[2]) >= 2, "several segments");
    assert.match(
      r.stdout,
      /WalReceiverManager .*\n\s+WalReceiverConnectionHandler .*\n\s+WalReceiverConnectionPoller/,
    );
    assert.match(r.stdout, /lastRecordLsn (\S+) = diskConsistentLsn \1/);
    assert.match(r.stdout, /live tasks now: 0/);
    // The demo's own server: its directory is gone and no process runs from it.
    const serverDir = /data in (\S+)\/data/.exec(r.stdout)?.[1];
    assert.ok(serverDir, r.stdout);
    assert.equal(existsSync(serverDir), false, `${serverDir} removed`);
    const left = spawnSync("pgrep", ["-f", serverDir], { encoding: "utf8" }).stdout.trim();
    assert.equal(left, "", "no server left running");
  });

  it("rejects a bad --rows with the value named", () => {
    const r = spawnSync(process.execPath, ["dist/cli/main.js", "demo", "--rows", "lots"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--rows "lots"/);
  });
});
